"""`xlpretrain bench`: training throughput of a config's train step, on its own data or on random
batches of its shapes, with its model FLOPs utilisation and memory; and with `--memory-speedup`,
what the Transformer-XL memory saves in evaluation."""

from __future__ import annotations

import contextlib
import dataclasses
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xlpretrain import config as config_lib
from xlpretrain.data import synthetic
from xlpretrain.errors import UserError
from xlpretrain.models.transformer import Memory, TransformerXL
from xlpretrain.train import plan, profile
from xlpretrain.train.experiment import Experiment
from xlpretrain.train.logging import progress


WARMUP_STEPS = 3  # untimed: the first steps fill the memory and settle the host allocator
PROFILED_STEPS = 5  # --profile: traced after the timed ones

# Dense bfloat16 peak FLOP/s of one chip, from the vendors' data sheets (NVIDIA H100 and H200 SXM,
# A100; Google Cloud TPU system architecture pages), keyed by a prefix of `device_kind`. The H100
# PCIe card is slower (756 TFLOP/s) and is listed first so that the prefix finds it.
BF16_PEAKS = {"NVIDIA H100 PCIe": 756e12, "NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100": 312e12,
              "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5": 459e12, "TPU v6 lite": 918e12}


def _call_seconds(fn, repeats: int) -> list[float]:
    """The seconds of `repeats` calls of `fn` (until its result is ready) after two untimed ones,
    the first of which compiles."""
    for _ in range(2):
        jax.block_until_ready(fn())
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        seconds.append(time.perf_counter() - start)
    return seconds


def measured_peak_flops(dtype, size: int, repeats: int = 5) -> float:
    """FLOP/s of one device multiplying two [size, size] matrices of `dtype`: the fastest of
    `repeats` calls (a peak, so the least disturbed call)."""
    a = jnp.ones((size, size), dtype)
    matmul = jax.jit(lambda a: a @ a)
    return 2 * size**3 / min(_call_seconds(lambda: matmul(a), repeats))


def peak_flops(dtype) -> tuple[float, str]:
    """(peak FLOP/s of one device for matmuls in `dtype`, where the figure comes from): the table for
    bfloat16 on a listed accelerator, otherwise measured with a large matmul."""
    device = jax.devices()[0]
    if np.dtype(dtype) == jnp.bfloat16:
        for prefix, peak in BF16_PEAKS.items():
            if device.device_kind.startswith(prefix):
                return peak, f"data sheet ({prefix}, bfloat16)"
    size = 2048 if device.platform == "cpu" else 8192
    return measured_peak_flops(dtype, size), f"measured ({size}x{size} matmul, {np.dtype(dtype).name})"


class _TimedSteps:
    """A config's compiled train step on its data (or on random batches of its shapes), stepped
    one timed step at a time; each step's batch is made and placed before its clock starts. `bar`,
    a progress bar, advances by one a step."""

    def __init__(self, config: ml_collections.ConfigDict, synthetic_data: bool, bar=None):
        self.bar = bar
        self.exp = exp = Experiment(config, with_data=not synthetic_data)
        config = exp.config
        if synthetic_data:
            shapes = {name: ((x.shape[0] // jax.process_count(),) + x.shape[1:], x.dtype)
                      for name, x in exp.batch_shapes("train").items()}
            seed = jax.process_index()
            self.batch_at = lambda step: synthetic.batch(shapes, config.model.vocab_size,
                                                         seed=step * jax.process_count() + seed)
        else:
            self.batch_at = exp.stream("train").batch_at
        with exp.context():
            self.state = exp.init_state()
        start = time.perf_counter()
        self.step_fn = self.compile()
        self.compile_seconds = time.perf_counter() - start
        self.step = 0

    def compile(self, compiler_options: dict | None = None):
        """The train step compiled for the state and the batches, with these XLA options."""
        with self.exp.context():
            batch = self.exp.to_global(self.batch_at(0))
            return self.exp.train_step().lower(self.state, batch).compile(compiler_options)

    def run(self, step_fn=None) -> float:
        """Runs the next step (with `step_fn`, another compilation of it); returns its seconds."""
        with self.exp.context():
            batch = self.exp.to_global(self.batch_at(self.step))
            start = time.perf_counter()
            self.state, metrics = (step_fn or self.step_fn)(self.state, batch)
            jax.block_until_ready(metrics)
            seconds = time.perf_counter() - start
        self.step += 1
        if self.bar is not None:
            self.bar.update()
        return seconds


@contextlib.contextmanager
def _stepping(configs: list[ml_collections.ConfigDict], synthetic_data: bool, steps: int, description: str):
    """The _TimedSteps of each config, compiled, their `steps` in all counted on one progress bar
    whose rate and ETA start after the compilations."""
    with progress(steps, 0, f"{description} (compiling first)", leave=False) as bar:
        timed = [_TimedSteps(config, synthetic_data, bar) for config in configs]
        bar.reset()
        bar.set_description(description)
        yield timed


def _profile(timed: _TimedSteps, directory: str) -> dict:
    """`profile.by_scope` of PROFILED_STEPS steps traced into `directory`, run by the step compiled
    anew with the platform's profiling options; {"error": ...} if that fails, so that a failed
    profile costs the timing nothing."""
    try:
        step_fn = timed.compile(profile.COMPILER_OPTIONS.get(jax.devices()[0].platform))
        path = profile.trace(lambda: timed.run(step_fn), PROFILED_STEPS, directory)
        return profile.by_scope(path, step_fn.as_text(), PROFILED_STEPS)
    except Exception as error:  # any failure of the trace or of its reading
        return {"error": f"{type(error).__name__}: {error}"}


def bench(config: ml_collections.ConfigDict, steps: int, synthetic_data: bool = False,
          profile_dir: str | None = None) -> dict:
    """Compiles the train step (timed), runs WARMUP_STEPS, then times `steps` steps one by one;
    tokens/s is the median. MFU is the model's FLOPs per token (`xlpretrain plan`'s count of the
    step's matmuls) times tokens/s over the peak FLOP/s of the devices; `mfu_compiled` counts XLA's
    FLOPs of the compiled step instead, which add the element-wise work. With `synthetic_data`,
    the batches are random tokens in the shapes of the config's (no corpus is read;
    model.vocab_size must be set, and a mask id the data would give is token 0). With `profile_dir`,
    "profile" is where the time of PROFILED_STEPS more steps went (`_profile`)."""
    with _stepping([config], synthetic_data, WARMUP_STEPS + steps + (PROFILED_STEPS if profile_dir else 0),
                   "bench") as (timed,):
        for _ in range(WARMUP_STEPS):
            timed.run()
        median = float(np.median([timed.run() for _ in range(steps)]))
        where = _profile(timed, profile_dir) if profile_dir else None
    exp, config = timed.exp, timed.exp.config
    tokens_per_sec = exp.tokens_per_step / median
    n_params = exp.param_count()
    flops_per_token = plan.model_flops_per_token(exp)
    compiled_flops = plan.compiled_flops_per_token(timed.step_fn, exp)
    dtype = jnp.dtype(config.model.dtype)
    peak, peak_source = peak_flops(dtype)
    devices = jax.devices()
    stats = devices[0].memory_stats() or {}
    return {"tokens_per_sec": tokens_per_sec, "step_ms_median": 1000 * median,
            "compile_seconds": timed.compile_seconds, "steps": steps, "tokens_per_step": exp.tokens_per_step,
            "params": n_params, "flops_per_token": flops_per_token,
            "model_flops_per_sec": flops_per_token * tokens_per_sec,
            "peak_flops_per_device": peak, "peak_source": peak_source,
            "mfu": flops_per_token * tokens_per_sec / (peak * len(devices)),
            "compiled_flops_per_token": compiled_flops,
            "mfu_compiled": compiled_flops * tokens_per_sec / (peak * len(devices)) if compiled_flops else None,
            "compiled_bytes_per_device": plan.compiled_bytes(timed.step_fn)["total"],
            "peak_bytes_in_use": stats.get("peak_bytes_in_use"), "dtype": dtype.name,
            "synthetic_data": synthetic_data, "devices": len(devices), "device_kind": devices[0].device_kind,
            "platform": devices[0].platform, "profile": where}


def alternate(timed: list, steps: int) -> np.ndarray:
    """[steps, len(timed)] seconds: WARMUP_STEPS untimed rounds, then `steps` rounds of one step of
    each of `timed` (steppers with a `run()` that returns a step's seconds) in turn."""
    for _ in range(WARMUP_STEPS):
        for t in timed:
            t.run()
    return np.asarray([[t.run() for t in timed] for _ in range(steps)])


def compare(config: ml_collections.ConfigDict, other: ml_collections.ConfigDict, steps: int,
            synthetic_data: bool = False) -> dict:
    """Times two configs in one process, their steps alternating, so that both see the same load:
    each one's median tokens/s and the median over step pairs of the first's step time over the
    second's (above 1: the second is faster). Both run below their speed under `bench` alone (the
    two programs' buffers take turns in the host's memory and caches); the ratio is the figure."""
    with _stepping([config, other], synthetic_data, 2 * (WARMUP_STEPS + steps), "bench --versus") as timed:
        pairs = alternate(timed, steps)
    return {"tokens_per_sec": [t.exp.tokens_per_step / float(np.median(pairs[:, i])) for i, t in enumerate(timed)],
            "time_ratio": float(np.median(pairs[:, 0] / pairs[:, 1])), "steps": steps,
            "synthetic_data": synthetic_data, "platform": jax.devices()[0].platform}


def table(result: dict) -> str:
    """`bench`'s result as the short table printed before its JSON line."""
    peak_memory = (f"{result['peak_bytes_in_use'] / plan.GIB:.2f} GiB" if result["peak_bytes_in_use"] is not None
                   else "not reported by the device")
    data = "random tokens" if result["synthetic_data"] else "the config's data"
    return "\n".join([
        f"devices            {result['devices']} x {result['device_kind']} ({result['platform']}), {result['dtype']}",
        f"tokens/s           {result['tokens_per_sec']:,.0f} (median of {result['steps']} steps of "
        f"{result['tokens_per_step']:,} tokens, {result['step_ms_median']:.1f} ms; {data})",
        f"compile            {result['compile_seconds']:.1f} s",
        f"model FLOPs        {result['flops_per_token'] / 1e9:.4f} G/token -> "
        f"{result['model_flops_per_sec'] / 1e12:.4f} TFLOP/s",
        f"peak per device    {result['peak_flops_per_device'] / 1e12:.4f} TFLOP/s, {result['peak_source']}",
        f"MFU                {result['mfu']:.1%}" + (f" ({result['mfu_compiled']:.1%} counting XLA's "
                                                       f"{result['compiled_flops_per_token'] / 1e9:.4f} G/token)"
                                                       if result["mfu_compiled"] else ""),
        f"memory per device  {result['compiled_bytes_per_device'] / plan.GIB:.2f} GiB compiled; peak in use: {peak_memory}",
    ])


# Dai et al. (2019), Table 9: the vanilla Transformer's evaluation time over Transformer-XL's, on GPU.
PAPER_SPEEDUPS = {3800: 1874, 2800: 1409, 1800: 773, 800: 363}


def _median_seconds(fn, repeats: int) -> float:
    return float(np.median(_call_seconds(fn, repeats)))


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
    rows = []
    with progress(len(lengths), 0, "bench --memory-speedup", leave=False) as bar:
        for length in lengths:
            rows.append(_speedup_row(model_config, config.seed, length, config.eval.batch_size, repeats))
            bar.update()
    return rows


def _speedup_row(model_config, seed: int, length: int, batch: int, repeats: int) -> dict:
    """`memory_speedup`'s figures at one attention length."""
    segment = length // 2
    if segment < 1:
        raise UserError(f"attention lengths must be >= 2, got {length}")
    with_memory = dataclasses.replace(model_config, mem_len=length - segment, clamp_len=-1, same_length=False)
    vanilla = dataclasses.replace(model_config, mem_len=0, clamp_len=-1, same_length=False)
    txl, window = TransformerXL(with_memory), TransformerXL(vanilla)
    params = jax.jit(txl.init)(jax.random.PRNGKey(seed), jnp.zeros((1, 1), jnp.int32), Memory.empty(with_memory, 1))
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
    return {"attention_length": length, "segment": segment, "memory": length - segment, "batch": batch,
            "ms_per_token_with_memory": 1000 * per_token[0], "ms_per_token_vanilla": 1000 * per_token[1],
            "speedup": per_token[1] / per_token[0], "paper_speedup_gpu": PAPER_SPEEDUPS.get(length),
            "platform": jax.devices()[0].platform}


def speedup_table(rows: list[dict]) -> str:
    lines = ["attention length   segment + memory   ms/token with memory   ms/token vanilla   speed-up   paper (GPU)"]
    for row in rows:
        paper = f"{row['paper_speedup_gpu']:,}x" if row["paper_speedup_gpu"] else "-"
        lines.append(f"{row['attention_length']:>16,}   {row['segment']:>7,} + {row['memory']:<6,}   "
                     f"{row['ms_per_token_with_memory']:>20.4f}   {row['ms_per_token_vanilla']:>16.3f}   "
                     f"{row['speedup']:>7,.0f}x   {paper:>11}")
    return "\n".join(lines)
