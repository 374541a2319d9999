"""`xlpretrain plan`: what a config costs before anything runs, and optionally what XLA compiles.

Figures per training step on the config's mesh (the devices JAX sees; fake CPU devices will do,
XLA_FLAGS=--xla_force_host_platform_device_count=N):

- FLOPs per token, forward and backward: those of every matmul (dot_general) of the step's
  gradient, counted in its jaxpr from the shapes (2 per multiply-add), on the batch it trains on.
  That is the model's work as the code states it: the output softmax where the objective scores
  (every token for `ar`, the masked positions for `mlm`, the targets of XLNet's query stream), the
  attention over memory and segment, no gradient where none is formed (the memory's keys and
  values, the sinusoids' projection). Recomputation is not counted (model.remat is set to none for
  the count), nor the element-wise work (softmax, normalisations, the optimizer); cuDNN's fused
  attention, a custom call, is counted in its XLA form; with train.micro_batches > 1, the
  sinusoids' projection counts once per micro-batch, as it runs. The usual estimate, 6 x the
  parameters + the attention, counts the output softmax at every token, which for an `mlm` step
  (BERT-base) is 24% more than it computes.
- Bytes per device: parameters, gradients and optimizer state as their shardings split them; the
  carried memory; activations, the residuals that JAX's autodiff keeps from the forward pass for
  the backward pass (traced, not compiled: exact before XLA's fusion), split along the batch (a
  tensor axis splits some of them further, so there the figure is an upper bound), of one
  micro-batch with train.micro_batches > 1 (which adds a second gradient, the running sum), and
  fewer with model.remat; and the backward pass's transient, the gradient of the largest residual (for a large
  vocabulary, the logits), which exists beside all the residuals at the start of the backward pass.
  Checked against XLA's memory analysis of the compiled step in tests/test_plan.py.

`compile=True` lowers and compiles the train step for the mesh, which catches sharding errors
without the hardware, and reports XLA's memory analysis and FLOP count next to the estimate. On
CPU the compiled figures do not show what model.remat and model.dtype="bfloat16" save: the CPU
program of bench_small with 16 layers takes 1.004 GiB with and without remat=full (its FLOP count
rising by the recomputation) and 1.076 GiB in bfloat16, against estimates of 0.995, 0.369 and
0.767 GiB; why (XLA's CPU scheduling, bfloat16 emulated in float32) has not been established, nor
whether GPU and TPU compilers agree with the estimate. What micro-batches save the CPU program shows.
"""

from __future__ import annotations

import copy
import math
import time

import jax
import jax.extend
import ml_collections
import numpy as np

from xlpretrain import parallel
from xlpretrain.train.experiment import Experiment

GIB = 2**30


def _bytes_per_device(shapes, shardings) -> int:
    return sum(math.prod(sharding.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
               for x, sharding in zip(jax.tree.leaves(shapes), jax.tree.leaves(shardings), strict=True))


def _bytes(shapes) -> int:
    return sum(x.size * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(shapes))


def _residual_bytes(backward, *args) -> list[int]:
    """The bytes of each array that `backward`'s closure keeps, other than its own inputs (the weights)."""
    closed = jax.make_jaxpr(backward)(*args)
    inputs = set(closed.jaxpr.invars)
    kept = {v for v in closed.jaxpr.outvars if isinstance(v, jax.extend.core.Var) and v not in inputs}
    return [v.aval.size * v.aval.dtype.itemsize for v in kept]


def called_jaxprs(params: dict) -> list:
    """The jaxprs an equation calls (a jit, a scan's body, a conditional's branches, a remat, a custom rule)."""
    found = []
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                found.append(item.jaxpr)
            elif isinstance(item, jax.extend.core.Jaxpr):
                found.append(item)
    return found


def matmul_flops(jaxpr: jax.extend.core.Jaxpr) -> int:
    """2 x the multiply-adds of the dot_generals a jaxpr runs: a scan's body counts times its length,
    a conditional its costliest branch. A while loop's trip count is not known before it runs: one
    with matmuls in its body is an error."""
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (contracted, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in contracted)
            continue
        inner = [matmul_flops(called) for called in called_jaxprs(eqn.params)]
        if name == "cond":
            total += max(inner)
        elif name == "scan":
            total += eqn.params["length"] * sum(inner)
        elif name == "while" and sum(inner):
            raise ValueError("a while loop runs matmuls an unknown number of times; its FLOPs cannot be counted")
        else:
            total += sum(inner)
    return total


def gradient_jaxpr(exp: Experiment) -> jax.extend.core.Jaxpr:
    """The jaxpr of `exp.gradients` (the step without the optimizer) on a training batch's shapes."""
    state = exp.state_shapes
    with exp.context():
        return jax.make_jaxpr(exp.gradients)(state.params, exp.batch_shapes("train"), state.memory, state.rng).jaxpr


def model_flops_per_token(exp: Experiment) -> float:
    """Training FLOPs per token of `exp`'s step: its gradient's matmuls (the module docstring)."""
    counted = copy.deepcopy(exp.config)
    counted.model.remat = "none"
    if counted.model.attention_kernel == "cudnn":
        counted.model.attention_kernel = "xla"
    plain = exp if counted == exp.config else Experiment(counted, with_data=False)
    return matmul_flops(gradient_jaxpr(plain)) / plain.tokens_per_step


def compiled_flops_per_token(compiled, exp: Experiment) -> float | None:
    """FLOPs per token of a compiled train step by XLA's cost analysis (None where the backend gives
    none). XLA counts a loop's body once: the micro-batch loop's FLOPs are micro times its count;
    under model.scan_layers the layers' loop would count one layer of n_layer, and the result is
    None (the unrolled model's compile gives the figure); so it is under model.attention_kernel='cudnn',
    whose fused attention is a custom call that XLA's cost analysis cannot see into."""
    cost = compiled.cost_analysis()
    if not cost or "flops" not in cost or exp.config.model.scan_layers or exp.config.model.attention_kernel == "cudnn":
        return None
    return cost["flops"] * exp.config.train.micro_batches * len(exp.mesh.devices.flat) / exp.tokens_per_step


def compiled_bytes(compiled) -> dict[str, int]:
    """A compiled program's bytes per device by XLA's memory analysis, and their total."""
    analysis = compiled.memory_analysis()
    parts = {"arguments": analysis.argument_size_in_bytes, "temporaries": analysis.temp_size_in_bytes,
             "outputs not aliased to arguments": analysis.output_size_in_bytes - analysis.alias_size_in_bytes}
    return parts | {"total": sum(parts.values())}


def plan(config: ml_collections.ConfigDict, compile: bool = False) -> dict:
    exp = Experiment(config, with_data=config.model.vocab_size is None)
    config, state, shardings = exp.config, exp.state_shapes, exp.state_shardings
    batch = exp.batch_shapes("train")
    n_params = exp.param_count()
    tokens = exp.tokens_per_step

    def backward(params, batch, memory, rng):
        return jax.vjp(lambda params: exp.objective.loss(params, batch, memory, rng, True)[0], params)[1]

    batch_ways, micro = parallel.batch_ways(exp.mesh, exp.rules), config.train.micro_batches
    rows = config.train.batch_size // micro
    micro_batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct((rows,) + x.shape[1:], x.dtype), batch)
    micro_memory = jax.eval_shape(lambda: exp.objective.init_memory(rows))
    residuals = _residual_bytes(backward, state.params, micro_batch, micro_memory, state.rng)
    params = _bytes_per_device(state.params, shardings.params)
    memory = {
        "params": params,
        "gradients": params * (2 if micro > 1 else 1),
        "optimizer": _bytes_per_device(state.opt_state, shardings.opt_state),
        "memory": _bytes_per_device(state.memory, shardings.memory),
        "batch": _bytes(batch) // batch_ways,
        "activations": sum(residuals) // batch_ways,
        "backward transient": max(residuals) // batch_ways,
    }
    memory["total"] = sum(memory.values())
    report = {"params": n_params, "mesh": dict(exp.mesh.shape), "tokens_per_step": tokens,
              "flops_per_token": model_flops_per_token(exp),
              "bytes_per_device": memory}
    if compile:
        start = time.perf_counter()
        with exp.context():
            abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
            compiled = exp.train_step().lower(abstract, batch).compile()
        report["compiled"] = {
            "seconds": time.perf_counter() - start,
            "bytes_per_device": compiled_bytes(compiled),
            "flops_per_token": compiled_flops_per_token(compiled, exp),
        }
    return report


def table(report: dict) -> str:
    """The report as the lines `xlpretrain plan` prints."""
    memory = report["bytes_per_device"]
    lines = [f"parameters          {report['params']:,}",
             f"mesh                {report['mesh']}",
             f"tokens per step     {report['tokens_per_step']:,}",
             f"FLOPs per token     {report['flops_per_token'] / 1e9:.3f} G (the step's matmuls)"]
    if "compiled" in report and report["compiled"]["flops_per_token"]:
        lines.append(f"  compiled          {report['compiled']['flops_per_token'] / 1e9:.3f} G (XLA cost analysis)")
    lines.append("per device          estimate" + ("     compiled" if "compiled" in report else ""))
    for name, value in memory.items():
        lines.append(f"  {name:<18}{value / GIB:9.3f} GiB")
    if "compiled" in report:
        compiled = report["compiled"]["bytes_per_device"]
        lines[-1] += f"  {compiled['total'] / GIB:9.3f} GiB  ({compiled['total'] / memory['total'] - 1:+.1%})"
        lines += [f"  compiled {name}: {value / GIB:.3f} GiB" for name, value in compiled.items() if name != "total"]
        lines.append(f"compiled in {report['compiled']['seconds']:.1f} s")
    return "\n".join(lines)
