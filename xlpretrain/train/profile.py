"""Where a compiled step's time goes: `xlpretrain bench --profile DIR`.

The steps run under `jax.profiler.trace`, which writes a trace that TensorBoard's profile plugin,
XProf or ui.perfetto.dev (the `*.trace.json.gz` file) can show. The trace's events for the step's
own XLA ops (they name the op in `args.hlo_op`) are summed per op and then per scope: the
`op_name` path JAX records in each op's metadata, cut to its module and named scopes
(`TransformerXL/TransformerXL._layers/layer_*/attn`, `optimizer`) with layer numbers folded into
`*`, and split into forward and backward (ops under `transpose(...)`, JAX's reverse pass). A fused
op belongs to the scope most of its fused ops come from.

On a CPU the ops of one step run on several threads at once, so their times overlap: the shares
are of the summed op time, not of the wall time. The CPU emits per-op events only when the step is
compiled with `COMPILER_OPTIONS["cpu"]`; on NVIDIA GPUs, XLA's command buffers hide the ops inside
them from the trace, so profile with `XLA_FLAGS=--xla_gpu_enable_command_buffer=`.
"""

from __future__ import annotations

import collections
import gzip
import json
import re
from pathlib import Path
from typing import Callable

import jax

COMPILER_OPTIONS = {"cpu": {"xla_cpu_enable_xprof_traceme": True}}

OUTSIDE = "(no scope)"

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = ")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")
# JAX writes a transformation around the first scope inside it: "transpose(jvp(TransformerXL))".
_TRANSFORM = re.compile(r"^(?:transpose|jvp|vmap|checkpoint|remat|pjit|shard_map)\((.*)\)$")
_CONTROL = ("while", "body", "cond", "branch", "scan", "closed_call")


def scope_of(op_name: str) -> tuple[str, bool]:
    """("module/scope path", backward?) of an op's metadata op_name, e.g.
    "jit(step)/transpose(jvp(TransformerXL))/TransformerXL._layers/layer_1/attn/hbqe,hbke->hbqk/dot_general"
    -> ("TransformerXL/TransformerXL._layers/layer_*/attn", True). The path ends at the primitive, at an einsum's
    equation or at a function jitted inside the step (jax.random's, jnp.take's)."""
    segments = op_name.split("/")[1:-1]  # without the step's own jit(...) and the primitive
    scope = []
    for segment in segments:
        while match := _TRANSFORM.match(segment):
            segment = match.group(1)
        if segment.startswith("jit(") or "->" in segment:
            break
        if segment and segment not in _CONTROL:
            scope.append(re.sub(r"_\d+$", "_*", segment))
    return "/".join(scope) or OUTSIDE, "transpose(" in op_name


def op_scopes(hlo_text: str) -> dict[str, tuple[str, bool]]:
    """Each instruction of a compiled module's text -> its (scope, backward); a fusion or call ->
    the commonest among the ops it calls (nested calls included) that have a scope."""
    own, calls, members = {}, {}, collections.defaultdict(list)
    computation = None
    for line in hlo_text.splitlines():
        if (match := _COMPUTATION.match(line)) and " = " not in line:
            computation = match.group(1)
            continue
        if not (match := _INSTRUCTION.match(line)):
            continue
        name = match.group(1)
        members[computation].append(name)
        if op_name := re.search(r'op_name="([^"]*)"', line):
            own[name] = scope_of(op_name.group(1))
        if called := re.search(r"\bcalls=%?([\w.\-]+)", line):  # fusions and calls, not a reduction's to_apply
            calls[name] = called.group(1)

    def votes(computation, seen):
        found = collections.Counter()
        for member in members.get(computation, []):
            if member in own:
                found[own[member]] += 1
            if member in calls and calls[member] not in seen:
                found.update(votes(calls[member], seen | {calls[member]}))
        return found

    scopes = dict(own)
    for name, computation in calls.items():
        found = votes(computation, {computation})
        scoped = [(scope, n) for scope, n in found.most_common() if scope[0] != OUTSIDE]
        if scoped or found:
            scopes[name] = (scoped or found.most_common())[0][0]
    return scopes


def trace(run: Callable[[], object], steps: int, directory: str | Path) -> Path:
    """Runs `run` `steps` times under the profiler; the path of the trace written into `directory`."""
    directory = Path(directory)
    before = set(directory.glob("**/*.trace.json.gz"))
    with jax.profiler.trace(str(directory), create_perfetto_trace=True):
        for _ in range(steps):
            jax.block_until_ready(run())
    written = sorted(set(directory.glob("**/*.trace.json.gz")) - before)
    if not written:
        raise RuntimeError(f"jax.profiler.trace wrote no *.trace.json.gz under {directory}")
    return written[-1]


def by_scope(trace_path: str | Path, hlo_text: str, steps: int) -> dict:
    """The module's op time per step from a trace: per scope (forward and backward milliseconds,
    share of all op time), and the ten longest ops."""
    module = re.match(r"HloModule ([\w.\-]+)", hlo_text).group(1)
    scopes = op_scopes(hlo_text)
    with gzip.open(trace_path) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    per_op = collections.Counter()
    for event in events:
        args = event.get("args") or {}
        op = args.get("hlo_op")
        if event.get("ph") == "X" and op in scopes and args.get("hlo_module", module) == module:
            per_op[op] += event.get("dur", 0) / 1000 / steps
    total = sum(per_op.values())
    if not total:
        raise RuntimeError(f"the trace {trace_path} has no timed ops of {module}; see xlpretrain/train/profile.py")
    rows = collections.defaultdict(lambda: {"forward_ms": 0.0, "backward_ms": 0.0})
    for op, ms in per_op.items():
        scope, backward = scopes[op]
        rows[scope]["backward_ms" if backward else "forward_ms"] += ms
    table = sorted(({"scope": scope, **row, "share": (row["forward_ms"] + row["backward_ms"]) / total}
                    for scope, row in rows.items()), key=lambda row: -row["share"])
    longest = [{"op": op, "scope": scopes[op][0], "backward": scopes[op][1], "ms": ms}
               for op, ms in per_op.most_common(10)]
    return {"trace": str(trace_path), "steps": steps, "op_ms_per_step": total, "scopes": table, "longest_ops": longest}


def table(profile: dict, step_ms: float) -> str:
    """`by_scope`'s result as the table `bench --profile` prints."""
    width = max(len(row["scope"]) for row in profile["scopes"])
    lines = [f"op time per step   {profile['op_ms_per_step']:.1f} ms against {step_ms:.1f} ms of wall time "
             f"(over {profile['steps']} traced steps; ops running at once overlap)",
             f"{'scope':<{width}}  {'forward ms':>10}  {'backward ms':>11}  {'share':>6}"]
    lines += [f"{row['scope']:<{width}}  {row['forward_ms']:>10.1f}  {row['backward_ms']:>11.1f}  {row['share']:>6.1%}"
              for row in profile["scopes"]]
    lines.append("longest ops:")
    lines += [f"  {row['op']:<32} {row['ms']:>7.2f} ms  {row['scope']}{' (backward)' if row['backward'] else ''}"
              for row in profile["longest_ops"]]
    lines.append(f"trace              {profile['trace']}")
    return "\n".join(lines)
