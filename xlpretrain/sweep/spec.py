"""Sweep files: a base config and a list of trials, each trial a set of config overrides.

A sweep file is a Python file (experiments/sweeps/quickstart_memory.py is one) defining

    BASE = "configs/quickstart.py"        # the base config, `path[:arg]` as for --config
    FIXED = {"train.steps": 4000}          # optional: overrides every trial shares
    TRIALS = product({"model.mem_len": [0, 32, 128]}, {"seed": [0, 1]})

TRIALS is a list of dicts from config keys to values, built with `product`, `zipped` and `sample`
below (or written out). A trial's seed is its `seed` override, or FIXED's, or the base config's.
Its workdir under the sweep's root is named after its overrides: `model.mem_len=32,seed=1`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import re
import shlex
from pathlib import Path
from typing import Any, Callable

import numpy as np

from xlpretrain import config as config_lib
from xlpretrain.errors import UserError

Trials = list[dict[str, Any]]


def _as_trials(part: Trials | dict[str, list]) -> Trials:
    """A list of trials as it is; a dict {key: values} as one trial per value of each key, the keys
    varying together (as `zipped`)."""
    if isinstance(part, dict):
        for key, values in part.items():
            if not isinstance(values, (list, tuple, range, np.ndarray)):
                raise UserError(f"sweep key {key!r} takes a list of values, got {values!r}")
        lengths = {key: len(values) for key, values in part.items()}
        if len(set(lengths.values())) > 1:
            raise UserError(f"the keys of one sweep axis must have as many values each: {lengths}")
        return [dict(zip(part, values)) for values in zip(*part.values())]
    if not isinstance(part, (list, tuple)) or not all(isinstance(trial, dict) for trial in part):
        raise UserError(f"sweep trials are dicts {{key: value}} (or one dict {{key: [values]}}), got {part!r:.80}")
    return [dict(trial) for trial in part]


def _plain(trial: dict) -> dict:
    """numpy's scalars (np.arange, np.logspace) as the Python values a config takes."""
    return {key: value.item() if isinstance(value, np.generic) else value for key, value in trial.items()}


def _merge(trials: tuple[dict, ...]) -> dict:
    merged = {}
    for trial in trials:
        for key in trial.keys() & merged.keys():
            raise UserError(f"sweep key {key!r} is set by two of the combined parts")
        merged.update(trial)
    return merged


def product(*parts: Trials | dict[str, list]) -> Trials:
    """Every combination of the parts' trials. `product({"a": [1, 2]}, {"b": [3, 4]})` is 4 trials;
    keys given in one dict vary together: `product({"a": [1, 2], "b": [3, 4]})` is 2."""
    return [_merge(combination) for combination in itertools.product(*map(_as_trials, parts))]


def zipped(*parts: Trials | dict[str, list]) -> Trials:
    """The parts' i-th trials together; the parts must have as many trials each."""
    lists = [_as_trials(part) for part in parts]
    if len({len(trials) for trials in lists}) > 1:
        raise UserError(f"zipped parts must have as many trials each, got {[len(t) for t in lists]}")
    return [_merge(combination) for combination in zip(*lists)]


@dataclasses.dataclass(frozen=True)
class Distribution:
    draw: Callable[[np.random.Generator], Any]


def uniform(low: float, high: float) -> Distribution:
    return Distribution(lambda rng: float(rng.uniform(low, high)))


def loguniform(low: float, high: float) -> Distribution:
    return Distribution(lambda rng: float(math.exp(rng.uniform(math.log(low), math.log(high)))))


def choice(values: list) -> Distribution:
    return Distribution(lambda rng: values[int(rng.integers(len(values)))])


def _round(value, digits: int = 3):
    """Floats to `digits` significant digits, so that sampled values read well in names and tables."""
    if isinstance(value, float) and value != 0 and math.isfinite(value):
        return round(value, digits - 1 - math.floor(math.log10(abs(value))))
    return value


def sample(n: int, space: dict[str, Distribution | list], seed: int = 0) -> Trials:
    """`n` trials drawn at random from `space` (a Distribution or a list of choices per key), the
    same ones for the same seed. Floats are rounded to 3 significant digits."""
    rng = np.random.default_rng(seed)
    draws = {key: dist if isinstance(dist, Distribution) else choice(list(dist)) for key, dist in space.items()}
    return [{key: _round(dist.draw(rng)) for key, dist in draws.items()} for _ in range(n)]


def format_value(value) -> str:
    """A value as `--config.KEY=VALUE` reads it back (config.override parses Python literals)."""
    return repr(value) if isinstance(value, (str, float)) else str(value)


def trial_name(trial: dict, keys: list[str]) -> str:
    """The workdir name of a trial: its overrides as `key=value` joined by commas, each key shortened
    to the last part that is unique among the sweep's keys (`mem_len`, unless two keys end so)."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if sum(other == suffix or other.endswith("." + suffix) for other in keys) == 1:
                short[key] = suffix
                break
        else:  # the whole key is the end of another one (seed, data.quickstart.seed)
            short[key] = key
    fields = []
    for key in keys:
        if key in trial:
            value = re.sub(r"[^A-Za-z0-9._+-]+", "-", format_value(trial[key]).strip("'\""))
            fields.append(f"{short[key]}={value}")
    name = ",".join(fields) or "base"
    if len(name) > 120:
        name = name[:100] + "," + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


@dataclasses.dataclass(frozen=True)
class Trial:
    name: str
    overrides: dict[str, Any]  # FIXED's and the trial's

    def arguments(self, base: str, workdir: Path) -> list[str]:
        """The `xlpretrain` arguments that train this trial."""
        return (["train", "--config", base, "--workdir", str(workdir)]
                + [f"--config.{key}={format_value(value)}" for key, value in self.overrides.items()])

    def command(self, base: str, workdir: Path) -> str:
        return shlex.join(["xlpretrain"] + self.arguments(base, workdir))


@dataclasses.dataclass(frozen=True)
class Sweep:
    file: Path
    base: str  # path[:arg] of the base config, as found from the current folder
    trials: list[Trial]

    def config(self, trial: Trial):
        """The trial's config; raises UserError for an override of a key the config lacks."""
        return config_lib.override(config_lib.load(self.base),
                                   [f"{key}={format_value(value)}" for key, value in trial.overrides.items()])


def _find_base(base: str, sweep_file: Path) -> str:
    """The base config's path: as written, or relative to the sweep file's folder or one above it,
    so that `configs/quickstart.py` is found from anywhere in the repository."""
    path, sep, arg = base.partition(":")
    for folder in (Path.cwd(), *sweep_file.resolve().parents):
        candidate = folder / path
        if candidate.is_file():
            found = candidate.resolve()
            try:
                found = found.relative_to(Path.cwd())
            except ValueError:
                pass
            return f"{found}{sep}{arg}"
    raise UserError(f"sweep {sweep_file}: BASE config {path} not found from here or from the sweep file's folders")


def load(file: str | Path) -> Sweep:
    """Reads a sweep file; every problem is one UserError naming it."""
    file = Path(file)
    module = config_lib.run_python_file(file, "sweep")
    for name in ("BASE", "TRIALS"):
        if not hasattr(module, name):
            raise UserError(f"sweep file {file} defines no {name}; see experiments/sweeps/quickstart_memory.py")
    fixed = _plain(dict(getattr(module, "FIXED", {})))
    trials = [_plain(trial) for trial in _as_trials(module.TRIALS)]
    if not trials:
        raise UserError(f"sweep file {file}: TRIALS is empty")
    keys = list(dict.fromkeys(key for trial in trials for key in trial))
    for key in keys:
        if key in fixed:
            raise UserError(f"sweep file {file}: {key!r} is in both FIXED and TRIALS")
    names = [trial_name(trial, keys) for trial in trials]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise UserError(f"sweep file {file}: trials {names.index(name)} and {i} are the same ({name})")
    sweep = Sweep(file, _find_base(module.BASE, file),
                  [Trial(name, {**fixed, **trial}) for name, trial in zip(names, trials)])
    for trial in sweep.trials:  # unknown keys and wrong types, before anything runs
        sweep.config(trial)
    return sweep
