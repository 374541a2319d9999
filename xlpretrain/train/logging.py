"""What a run writes about itself: `metrics.jsonl`, TensorBoard events, a progress bar, and, when
`wandb.enabled`, the same metrics to Weights & Biases.

`metrics.jsonl` has one JSON object per line with at least `step`, `split` ("train", "valid" or
"test"), `loss` (nats per predicted token), the objective's own figures (`ppl` and `bits_per_token`
for `ar`; each objective's `summarize` lists its own) and `seconds` (the run's wall time so far,
resumes added up). Only process 0 writes.
"""

from __future__ import annotations

import importlib
import json
import math
import secrets
import sys
import time
from pathlib import Path

import jax
import ml_collections
import tqdm

from xlpretrain.errors import UserError

METRICS_FILE = "metrics.jsonl"
WANDB_ID_FILE = "wandb_run_id"  # the Weights & Biases run that a resumed run goes on logging to


def _summary_writer():
    """tensorboardX's SummaryWriter, imported without torch where torch is installed but not loaded:
    tensorboardX imports it only to accept torch tensors, which xlpretrain never passes, and it
    would add 2 s to the start of every run."""
    if "torch" in sys.modules:
        return importlib.import_module("tensorboardX").SummaryWriter
    sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX expects
    try:
        return importlib.import_module("tensorboardX").SummaryWriter
    finally:
        del sys.modules["torch"]


def _written_lines(path: Path) -> tuple[list[str], bool]:
    """The file's complete lines, and whether it ends in a line a kill cut short (each line is
    written with its newline in one call, so only the last can be, and it has no newline)."""
    text = path.read_text() if path.is_file() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    torn = bool(text) and not text.endswith("\n")
    return (lines[:-1] if torn else lines), torn


def keep_lines_up_to(path: Path, step: int) -> None:
    """Drops lines logged after `step`: a run resumed from the checkpoint at `step` logs them again,
    identically, and the file then reads as one uninterrupted run."""
    lines, torn = _written_lines(path)
    kept = [line for line in lines if json.loads(line)["step"] <= step]
    if torn or len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))


def read_metrics(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in _written_lines(Path(workdir) / METRICS_FILE)[0]]


def final_test_line(workdir: Path, steps: int) -> dict | None:
    """The test line a run that reached `steps` logged at its end, or None if it has not."""
    lines = [line for line in read_metrics(workdir) if line["split"] == "test" and line["step"] == steps]
    return lines[-1] if lines else None


def _wandb_run(workdir: Path, config: ml_collections.ConfigDict):
    """A Weights & Biases run for the workdir, the same one again when the run resumes."""
    try:
        import wandb
    except ImportError:
        raise UserError("wandb.enabled needs the wandb package: pip install 'xlpretrain[wandb]'") from None
    id_file = workdir / WANDB_ID_FILE
    if not id_file.is_file():
        id_file.write_text(secrets.token_hex(8))
    settings = config.wandb
    return wandb.init(project=settings.project, entity=settings.entity or None, name=workdir.resolve().name,
                      id=id_file.read_text().strip(), resume="allow", dir=str(workdir), mode=settings.mode or None,
                      config=config.to_dict())


class MetricsLog:
    """`wandb=False` keeps the lines from W&B (`xlpretrain eval` logs an earlier step, which W&B drops)."""

    def __init__(self, workdir: Path, config: ml_collections.ConfigDict, wandb: bool = True):
        self.enabled = jax.process_index() == 0
        self.path = Path(workdir) / METRICS_FILE
        wandb = wandb and config.wandb.enabled and self.enabled
        self.wandb = _wandb_run(Path(workdir), config) if wandb else None
        # After W&B, whose errors would otherwise leave the writer's thread open until the
        # interpreter's exit, where it fails (Python 3.12) with a traceback after the error line.
        self.writer = _summary_writer()(str(Path(workdir) / "tensorboard")) if self.enabled else None
        self.opened, self.earlier_seconds = time.perf_counter(), None

    def resume(self, step: int) -> None:
        """Keeps the lines up to `step`: a run resumed at step s logs the later ones again."""
        if self.enabled:
            keep_lines_up_to(self.path, step)

    def write(self, line: dict) -> None:
        if not self.enabled:
            return
        if self.earlier_seconds is None:  # the wall time of the lines kept from before this process
            self.earlier_seconds = max((old.get("seconds", 0) for old in read_metrics(self.path.parent)), default=0)
        line = {**line, "seconds": round(self.earlier_seconds + time.perf_counter() - self.opened, 2)}
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
        scalars = {f"{line['split']}/{key}": value for key, value in line.items()
                   if key not in ("step", "split") and isinstance(value, (int, float)) and math.isfinite(value)}
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, line["step"])
        self.writer.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=line["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


def announce(message: str) -> None:
    """Prints a console line on process 0."""
    if jax.process_index() == 0:
        print(message, flush=True)


def progress(total: int, initial: int, desc: str, leave: bool = True) -> tqdm.tqdm:
    """A console progress bar with rate and ETA (only on process 0)."""
    return tqdm.tqdm(total=total, initial=initial, desc=desc, unit="step", leave=leave, dynamic_ncols=True,
                     mininterval=1.0, disable=jax.process_index() != 0)
