"""What a run writes about itself: `metrics.jsonl`, TensorBoard events, a progress bar.

`metrics.jsonl` has one JSON object per line with at least `step`, `split` ("train", "valid" or
"test"), `loss` (nats per predicted token), `ppl` and `bits_per_token`. Only process 0 writes.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import jax
import tqdm

METRICS_FILE = "metrics.jsonl"


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


def keep_lines_up_to(path: Path, step: int) -> None:
    """Drops lines logged after `step`: a run resumed from the checkpoint at `step` logs them again,
    identically, and the file then reads as one uninterrupted run."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))


def read_metrics(workdir: Path) -> list[dict]:
    path = Path(workdir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLog:
    def __init__(self, workdir: Path):
        self.enabled = jax.process_index() == 0
        self.path = Path(workdir) / METRICS_FILE
        self.writer = _summary_writer()(str(Path(workdir) / "tensorboard")) if self.enabled else None

    def write(self, line: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
        for key, value in line.items():
            if key not in ("step", "split") and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"{line['split']}/{key}", value, line["step"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def announce(message: str) -> None:
    """Prints a console line on process 0."""
    if jax.process_index() == 0:
        print(message, flush=True)


def progress(total: int, initial: int, desc: str, leave: bool = True) -> tqdm.tqdm:
    """A console progress bar with rate and ETA (only on process 0)."""
    return tqdm.tqdm(total=total, initial=initial, desc=desc, unit="step", leave=leave, dynamic_ncols=True,
                     mininterval=1.0, disable=jax.process_index() != 0)
