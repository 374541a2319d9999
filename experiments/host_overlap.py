"""How long the host works on a batch, and whether the train loop hides it behind the device's step.

    python experiments/host_overlap.py batch-times

prints the median time of `batch_at` (a batch of this host's rows as numpy arrays) and of
`to_global` (onto the devices) for BERT, ELECTRA and XLNet at their papers' batch sizes on the CPU
variants' data (WikiText-2 as documents), and Transformer-XL's WikiText-2 stream.

    python experiments/host_overlap.py DELAY [sync]

trains the quickstart model 80 steps with every batch's `batch_at` slowed by DELAY seconds of
sleep (host work that takes no CPU), and prints the median time per step over the log windows
after the first. `sync` makes the loop block on each step's own outputs right after dispatching it,
so that the host's work and the step add up; the loop as it is keeps one step in flight while it
builds the next batch (`parallel.wait_one_step_behind`).

Results and the command that ran them: benchmarks/RESULTS.md, "Host work and the step".
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from xlpretrain import config as config_lib
from xlpretrain.cli import keep_freed_memory
from xlpretrain.data.stream import OrderedStream
from xlpretrain.train import loop
from xlpretrain.train.experiment import Experiment

BATCHES = [("configs/bert/base.py:cpu", 256), ("configs/electra/base.py:cpu", 256), ("configs/xlnet/base.py:cpu", 32),
           ("configs/transformer_xl/wt2.py", 60)]


def batch_times(steps: int = 20) -> None:
    for path, batch_size in BATCHES:
        exp = Experiment(config_lib.override(config_lib.load(path), [f"train.batch_size={batch_size}"]))
        stream = exp.stream("train")
        stream.batch_at(0)
        host, put = [], []
        for step in range(1, steps + 1):
            start = time.perf_counter()
            batch = stream.batch_at(step)
            made = time.perf_counter()
            jax.block_until_ready(exp.to_global(batch))
            host.append(made - start)
            put.append(time.perf_counter() - made)
        shape = "x".join(map(str, batch["tokens"].shape))
        print(f"{path} batch {shape}: batch_at {1000 * np.median(host):.2f} ms, to_global {1000 * np.median(put):.2f} ms")


def main(delay: float, sync: bool) -> None:
    batch_at = OrderedStream.batch_at

    def slow_batch_at(self, step):
        time.sleep(delay)
        return batch_at(self, step)

    OrderedStream.batch_at = slow_batch_at
    if sync:
        add = loop._Window.add

        def add_and_wait(self, step, metrics):
            add(self, step, metrics)
            jax.block_until_ready(metrics)

        loop._Window.add = add_and_wait
    config = config_lib.override(config_lib.load("configs/quickstart.py"), [
        "train.steps=80", "train.warmup_steps=10", "train.log_every=20", "train.eval_every=1000",
        "train.checkpoint_every=80"])
    with tempfile.TemporaryDirectory() as workdir:
        loop.train(config, workdir)
        lines = [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    rates = [line["tokens_per_sec"] for line in lines if line["split"] == "train"][1:]
    ms = 1000 * config.train.batch_size * config.train.tgt_len / np.median(rates)
    print(f"host delay {1000 * delay:.0f} ms, {'sync' if sync else 'as is'}: {ms:.1f} ms per step")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", help="'batch-times', or the seconds of sleep added to every batch")
    parser.add_argument("sync", nargs="?", choices=["sync"], help="wait on each step's own outputs")
    args = parser.parse_args()
    keep_freed_memory()  # as `xlpretrain` does: the steps' temporaries are not faulted in afresh
    if args.what == "batch-times":
        batch_times()
    else:
        main(float(args.what), args.sync == "sync")
