"""`xlpretrain bench`: training throughput of a config's train step, on its own data; and with
`--memory-speedup`, what the Transformer-XL memory saves in evaluation."""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xlpretrain import config as config_lib
from xlpretrain.errors import UserError
from xlpretrain.models.transformer import Memory, TransformerXL
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


# Dai et al. (2019), Table 9: the vanilla Transformer's evaluation time over Transformer-XL's, on GPU.
PAPER_SPEEDUPS = {3800: 1874, 2800: 1409, 1800: 773, 800: 363}


def _median_seconds(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compiles
    jax.block_until_ready(fn())
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def memory_speedup(config: ml_collections.ConfigDict, lengths: list[int], repeats: int = 5) -> list[dict]:
    """What the memory saves in evaluation (Transformer-XL paper, Table 9). At attention length A,
    Transformer-XL reads segments of L = A // 2 tokens with a memory of M = A - L and scores every
    token of a segment; the vanilla Transformer of Al-Rfou et al. (2019) recomputes the whole window
    of A tokens for each token it scores (a sliding window of stride 1). Both run the config's model
    (the same weights, without dropout) on eval.batch_size rows of random tokens; the figures are
    the median time of `repeats` calls per scored token, and their ratio."""
    if config.model.vocab_size is None:
        raise UserError("--memory-speedup runs on random tokens: set --config.model.vocab_size")
    model_config = config_lib.model_config(config)
    batch = config.eval.batch_size
    rows = []
    for length in lengths:
        segment = length // 2
        if segment < 1:
            raise UserError(f"attention lengths must be >= 2, got {length}")
        with_memory = dataclasses.replace(model_config, mem_len=length - segment, clamp_len=-1, same_length=False)
        vanilla = dataclasses.replace(model_config, mem_len=0, clamp_len=-1, same_length=False)
        txl, window = TransformerXL(with_memory), TransformerXL(vanilla)
        params = jax.jit(txl.init)(jax.random.PRNGKey(config.seed), jnp.zeros((1, 1), jnp.int32),
                                   Memory.empty(with_memory, 1))
        tokens = jax.random.randint(jax.random.PRNGKey(1), (batch, length + 1), 0, model_config.vocab_size)

        @jax.jit
        def segment_step(params, tokens, memory):
            hidden, memory = txl.apply(params, tokens[:, :segment], memory)
            return memory, jnp.sum(txl.apply(params, hidden, tokens[:, 1:segment + 1], method=TransformerXL.nll))

        @jax.jit
        def window_step(params, tokens):
            hidden, _ = window.apply(params, tokens[:, :length], Memory.empty(vanilla, tokens.shape[0]))
            return jnp.sum(window.apply(params, hidden[:, -1:], tokens[:, length:], method=TransformerXL.nll))

        memory = Memory.empty(with_memory, batch)
        for _ in range(2):  # fills the memory
            memory = segment_step(params, tokens, memory)[0]
        per_token = [_median_seconds(lambda: segment_step(params, tokens, memory), repeats) / (batch * segment),
                     _median_seconds(lambda: window_step(params, tokens), repeats) / batch]
        rows.append({"attention_length": length, "segment": segment, "memory": length - segment, "batch": batch,
                     "ms_per_token_with_memory": 1000 * per_token[0], "ms_per_token_vanilla": 1000 * per_token[1],
                     "speedup": per_token[1] / per_token[0], "paper_speedup_gpu": PAPER_SPEEDUPS.get(length),
                     "platform": jax.devices()[0].platform})
    return rows


def speedup_table(rows: list[dict]) -> str:
    lines = ["attention length   segment + memory   ms/token with memory   ms/token vanilla   speed-up   paper (GPU)"]
    for row in rows:
        paper = f"{row['paper_speedup_gpu']:,}x" if row["paper_speedup_gpu"] else "-"
        lines.append(f"{row['attention_length']:>16,}   {row['segment']:>7,} + {row['memory']:<6,}   "
                     f"{row['ms_per_token_with_memory']:>20.4f}   {row['ms_per_token_vanilla']:>16.3f}   "
                     f"{row['speedup']:>7,.0f}x   {paper:>11}")
    return "\n".join(lines)
