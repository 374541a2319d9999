"""`xlpretrain report ROOT` and `xlpretrain plot ROOT`: every run below a folder in one table or one
figure, each run told apart by the config values that differ between the runs.

A run is a workdir below ROOT holding `config.json` (written when training starts) or `trial.json`
(written by `xlpretrain sweep`, also for a trial that failed before it started training). Runs that
`--restart` moved to `previous/` are left out.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import statistics
from pathlib import Path
from typing import Any

from xlpretrain.errors import UserError
from xlpretrain.sweep.runners import STATUS_FILE, duration, read_status
from xlpretrain.sweep.spec import trial_name
from xlpretrain.train.experiment import CONFIG_FILE
from xlpretrain.train.logging import read_metrics

SPLITS = ("train", "valid", "test")
X_AXES = ("step", "tokens", "seconds")


@dataclasses.dataclass
class Run:
    name: str                # the workdir relative to ROOT
    settings: dict[str, Any]  # the flattened config.json, or the trial's overrides
    lines: list[dict]        # metrics.jsonl
    status: dict             # trial.json, {} for a run not started by a sweep

    def values(self, split: str, key: str) -> list[tuple[dict, float]]:
        return [(line, line[key]) for line in self.lines if line["split"] == split and key in line]

    def state(self) -> str:
        if self.status.get("status"):
            return self.status["status"]
        steps = self.settings.get("train.steps")  # a test line of an earlier step is `xlpretrain eval`'s
        return "done" if any(line["split"] == "test" and line["step"] == steps for line in self.lines) else "unfinished"


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = tuple(value) if isinstance(value, list) else value
    return flat


def find_runs(root: str | Path) -> list[Run]:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder")
    configs = {path.parent: json.loads(path.read_text()) for path in root.rglob(CONFIG_FILE)}
    configs = {workdir: config for workdir, config in configs.items() if "objective" in config}  # not HF's
    workdirs = sorted({*configs, *(path.parent for path in root.rglob(STATUS_FILE))})
    workdirs = [workdir for workdir in workdirs if "previous" not in workdir.relative_to(root).parts]
    if not workdirs:
        raise UserError(f"no runs under {root}: a run's workdir holds {CONFIG_FILE}")
    runs = []
    for workdir in workdirs:
        status = read_status(workdir)
        settings = _flatten(configs[workdir]) if workdir in configs else dict(status.get("overrides", {}))
        runs.append(Run(str(workdir.relative_to(root)) if workdir != root else root.name,
                        settings, read_metrics(workdir), status))
    return runs


def differing_keys(runs: list[Run]) -> list[str]:
    """The config keys with two or more values among the runs that have them (seed last)."""
    keys = sorted({key for run in runs for key in run.settings})
    keys = [key for key in keys if len({repr(run.settings[key]) for run in runs if key in run.settings}) > 1]
    return sorted(keys, key=lambda key: key == "seed")


def label(run: Run, keys: list[str]) -> str:
    return trial_name({k: run.settings[k] for k in keys if k in run.settings}, keys) if keys else run.name


def _metric(metric: str) -> tuple[str, str]:
    split, sep, key = metric.partition("/")
    if not sep or split not in SPLITS or not key:
        raise UserError(f"--metric {metric!r} must be SPLIT/KEY with SPLIT one of {', '.join(SPLITS)}, e.g. valid/ppl")
    return split, key


def _higher_is_better(key: str) -> bool:
    return any(word in key for word in ("acc", "auc", "f1", "precision", "recall", "tokens_per_sec"))


def table(runs: list[Run], metric: str) -> list[dict]:
    """One row per run, sorted by the best value of `metric` (runs without one last)."""
    split, key = _metric(metric)
    if not any(run.values(split, key) for run in runs):
        logged = sorted({f"{line['split']}/{k}" for run in runs for line in run.lines for k in line
                         if k not in ("step", "split")})
        raise UserError(f"no run logged {metric}; logged: {', '.join(logged) or 'nothing yet'}")
    best_of = max if _higher_is_better(key) else min
    keys = differing_keys(runs)
    rows = []
    for run in runs:
        values = [value for _, value in run.values(split, key)]
        tested = run.values("test", key)
        speeds = [value for _, value in run.values("train", "tokens_per_sec")]
        row = {"run": run.name, **{k: run.settings.get(k) for k in keys}, "status": run.state(),
               "steps": max((line["step"] for line in run.lines), default=0),
               f"{metric} final": values[-1] if values else None,
               f"{metric} best": best_of(values) if values else None,
               f"test/{key}": tested[-1][1] if tested else None}
        truth = [line[f"true_{key}"] for line in run.lines if f"true_{key}" in line]
        if truth:
            row[f"true {key}"] = truth[-1]
        row.update({"tokens/s": statistics.median(speeds) if speeds else None,
                    "wall seconds": max((line.get("seconds", 0) for line in run.lines), default=None) or None,
                    "error": run.status.get("error")})
        rows.append(row)
    columns = list(dict.fromkeys(column for row in rows for column in row))
    if not any(row["error"] for row in rows):
        columns.remove("error")
    rows = [{column: row.get(column) for column in columns} for row in rows]
    sign = -1 if _higher_is_better(key) else 1
    return sorted(rows, key=lambda row: (row[f"{metric} best"] is None, sign * (row[f"{metric} best"] or 0)))


def _cell(column: str, value) -> str:
    if value is None:
        return ""
    if column == "wall seconds":
        return duration(value)
    if column == "tokens/s":
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:#.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


def markdown(rows: list[dict]) -> str:
    columns = ["wall time" if c == "wall seconds" else c for c in rows[0]]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(c, v) for c, v in row.items()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def report(root: str | Path, metric: str) -> str:
    """Writes ROOT/report.md and ROOT/report.csv; returns the Markdown table."""
    rows = table(find_runs(root), metric)
    text = markdown(rows)
    Path(root, "report.md").write_text(text)
    Path(root, "report.csv").write_text(to_csv(rows))
    return text


def _x(run: Run, line: dict, x: str) -> float | None:
    if x == "tokens":
        return line["step"] * run.settings["train.batch_size"] * run.settings["train.tgt_len"]
    return line.get(x)


def plot(root: str | Path, metric: str, x: str = "step", out: str | Path | None = None) -> tuple[Path, list[str]]:
    """Draws `metric` against `x` for every run below `root`, one line each, and saves a PNG
    (default ROOT/SPLIT-KEY.png); returns its path and the lines' labels. Runs that differ only in
    their seed share a colour. The y axis is logarithmic when the values span more than a factor of 3."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if x not in X_AXES:
        raise UserError(f"--x {x!r} must be one of {', '.join(X_AXES)}")
    split, key = _metric(metric)
    runs = [run for run in find_runs(root) if run.values(split, key)]
    if not runs:
        raise UserError(f"no run under {root} logged {metric}")
    keys = differing_keys(runs)
    runs.sort(key=lambda run: [(type(run.settings.get(k)).__name__, run.settings.get(k)) for k in keys])
    shared = [k for k in keys if k != "seed"]  # runs that differ only in their seed share a colour
    groups = [label(run, shared) if shared else "" for run in runs]
    colors = {group: plt.cm.tab10(i % 10) for i, group in enumerate(dict.fromkeys(groups))}
    seeds = list(dict.fromkeys(run.settings.get("seed") for run in runs))
    figure, axes = plt.subplots(figsize=(8, 5))
    labels, values, truth = [], [], set()
    for run, group in zip(runs, groups):
        points = [(_x(run, line, x), value) for line, value in run.values(split, key)]
        points = [(at, value) for at, value in points if at is not None]
        if not points:
            continue
        style = ("-", "--", ":", "-.")[seeds.index(run.settings.get("seed")) % 4]
        labels.append(label(run, keys))
        axes.plot(*zip(*points), style, color=colors[group], marker="o", markersize=3, label=labels[-1])
        values += [value for _, value in points]
        truth |= {line[f"true_{key}"] for line, _ in run.values(split, key) if f"true_{key}" in line}
    if not values:
        plt.close(figure)
        raise UserError(f"no run under {root} logged {metric} with {x}")
    for value in sorted(truth):
        axes.axhline(value, color="black", linewidth=1, linestyle=(0, (1, 3)), label=f"true {key} {value:.4g}")
    if min(values) > 0 and max(values) / min(values) > 3:
        axes.set_yscale("log")
    axes.set_xlabel(x)
    axes.set_ylabel(metric)
    axes.set_title(Path(root).resolve().name)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    out = Path(out) if out else Path(root) / f"{split}-{key}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110, metadata={"Description": json.dumps(labels)})
    plt.close(figure)
    return out, labels
