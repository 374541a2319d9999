"""`xlpretrain bench`: training throughput of a config's train step, on its own data."""

from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np

from xlpretrain.train.experiment import Experiment


WARMUP_STEPS = 3  # untimed: the first steps fill the memory and settle the host allocator


def bench(config: ml_collections.ConfigDict, steps: int) -> dict:
    """Compiles the train step (timed), runs WARMUP_STEPS, then times `steps` steps one by one;
    tokens/s is the median."""
    exp = Experiment(config)
    tokens_per_step = exp.config.train.batch_size * exp.config.train.tgt_len
    stream = exp.stream("train")
    with exp.context():
        state = exp.init_state()
        batch = exp.to_global(stream.batch_at(0))
        start = time.perf_counter()
        step_fn = exp.train_step().lower(state, batch).compile()
        compile_seconds = time.perf_counter() - start
        for step in range(WARMUP_STEPS):
            state, metrics = step_fn(state, exp.to_global(stream.batch_at(step)))
        jax.block_until_ready(metrics)
        seconds = []
        for step in range(WARMUP_STEPS, WARMUP_STEPS + steps):
            batch = exp.to_global(stream.batch_at(step))
            start = time.perf_counter()
            state, metrics = step_fn(state, batch)
            jax.block_until_ready(metrics)
            seconds.append(time.perf_counter() - start)
    median = float(np.median(seconds))
    return {"tokens_per_sec": tokens_per_step / median, "step_ms_median": 1000 * median,
            "compile_seconds": compile_seconds, "steps": steps, "tokens_per_step": tokens_per_step,
            "params": exp.param_count(), "devices": len(jax.devices()), "platform": jax.devices()[0].platform}
