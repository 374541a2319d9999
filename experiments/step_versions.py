"""Times the train step of this checkout's xlpretrain against the same step at an earlier commit,
the two compiled programs alternating in one process so that both see the same load (separate runs
on a shared machine differ by 20% from one to the next).

    python experiments/step_versions.py COMMIT [--config PATH] [--steps 30] [--synthetic] [--config.KEY=VALUE ...]

The commit's `xlpretrain` package is extracted with `git archive` into a temporary folder and
imported under another name (its imports of itself renamed to match), so that both versions live in
one process. Both train the config from the same initial state on the same batches (`--synthetic`:
random batches of the config's shapes, as `xlpretrain bench --synthetic` times them). Prints each
version's median tokens/s, the median over step pairs of this checkout's step time over the commit's
(below 1: this checkout is faster), and the largest difference between the two versions'
parameters after the same steps (0 when the change leaves the arithmetic as it was).
"""

import argparse
import importlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from xlpretrain.cli import _split_overrides, keep_freed_memory
from xlpretrain.train import bench

REPOSITORY = Path(__file__).resolve().parent.parent


def package_at(commit: str, folder: Path):
    """The xlpretrain package of `commit`, imported from `folder` as xlpretrain_at_<commit>."""
    name = "xlpretrain_at_" + re.sub(r"\W", "_", commit)
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", commit, "xlpretrain"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    (folder / "xlpretrain").rename(folder / name)
    for path in (folder / name).rglob("*.py"):
        text = path.read_text()
        text = re.sub(r"\bfrom xlpretrain\b", f"from {name}", text)
        text = re.sub(r"\bimport xlpretrain\.", f"import {name}.", text)
        path.write_text(text)
    sys.path.insert(0, str(folder))
    return name


def timed_steps(package: str, spec: str, overrides: list[str], synthetic: bool):
    """bench's stepper of `package` for the config at `spec` with `overrides`, compiled."""
    config = importlib.import_module(f"{package}.config")
    bench = importlib.import_module(f"{package}.train.bench")
    return bench._TimedSteps(config.override(config.load(spec), overrides), synthetic_data=synthetic)


def main():
    """Times the commit's step against this checkout's and prints what the module's docstring says."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commit")
    parser.add_argument("--config", default="configs/transformer_xl/bench_small.py")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--synthetic", action="store_true")
    args, rest = parser.parse_known_args()
    rest, overrides = _split_overrides(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    keep_freed_memory()  # as `xlpretrain` does: the steps' temporaries are not faulted in afresh
    with tempfile.TemporaryDirectory() as folder:
        old = timed_steps(package_at(args.commit, Path(folder)), args.config, overrides, args.synthetic)
        new = timed_steps("xlpretrain", args.config, overrides, args.synthetic)
        seconds = bench.alternate([old, new], args.steps)
    tokens = [old.exp.tokens_per_step / np.median(seconds[:, i]) for i in range(2)]
    difference = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                     for a, b in zip(jax.tree.leaves(old.state.params), jax.tree.leaves(new.state.params)))
    print(f"{args.commit}: {tokens[0]:,.0f} tokens/s; this checkout: {tokens[1]:,.0f} tokens/s "
          f"(medians of {args.steps} steps)")
    print(f"this checkout's step takes {np.median(seconds[:, 1] / seconds[:, 0]):.3f} times as long (median over "
          f"pairs); largest parameter difference after {old.step} steps: {difference:.2e}")


if __name__ == "__main__":
    main()
