"""Where a compiled step's time goes: `xlpretrain bench --profile DIR`.

The steps run under `jax.profiler.trace`, which writes a trace that TensorBoard's profile plugin,
XProf or ui.perfetto.dev (the `*.trace.json.gz` file) can show. The trace's events for the step's
own XLA ops (they name the op in `args.hlo_op`; on a GPU or TPU only those of the device's own
timeline; not loops and conditionals, whose bodies' ops have events of their own) count their own
time, less that of op events inside them on their thread, and are summed per op and then per
scope: the `op_name` path JAX records in each op's metadata, cut to its module and named scopes
(`TransformerXL/TransformerXL._layers/layer_*/attn`, `optimizer`) with layer numbers folded into
`*`, and split into forward and backward (ops under `transpose(...)`, JAX's reverse pass). A fused
op belongs to the scope most of its fused ops come from, an op XLA made without an op_name to its
operand's, one XLA combined from several to their common scope; what has none counts under
"(no scope)".

On a CPU the ops of one step run on several threads at once, so their times overlap: the shares
are of the summed op time, not of the wall time. The step is compiled a second time for the trace,
with `COMPILER_OPTIONS` for its platform: the CPU emits per-op events only when asked, and on
NVIDIA GPUs XLA's command buffers would hide the ops inside them.
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import re
from pathlib import Path
from typing import Callable

import jax

COMPILER_OPTIONS = {"cpu": {"xla_cpu_enable_xprof_traceme": True}, "gpu": {"xla_gpu_enable_command_buffer": ""}}

OUTSIDE = "(no scope)"

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = ")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")
# A loop's or a conditional's event spans its body's ops, which have events of their own, on
# whichever threads ran them.
_LOOP = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?\s(?:while|conditional)\(", re.M)
# JAX writes a transformation around the first scope inside it: "transpose(jvp(TransformerXL))".
_TRANSFORM = re.compile(r"^(?:transpose|jvp|vmap|checkpoint|remat|pjit|shard_map)\((.*)\)$")
# A scanned body is a "closed_call" under jax 0.10, an "eval_jaxpr" under 0.11.
_CONTROL = ("while", "body", "cond", "branch", "scan", "closed_call", "eval_jaxpr", "checkpoint", "remat",
            "rematted_computation")
# XLA joins the op_names of ops it combined (a collective over several gradients) as "(a:b)".
_COMBINED = re.compile(r"^(jit\([^/]*\)/)?\((.*)\)/([^/]*)$")


def scope_of(op_name: str) -> tuple[str, bool]:
    """("module/scope path", backward?) of an op's metadata op_name, e.g.
    "jit(step)/transpose(jvp(TransformerXL))/TransformerXL._layers/layer_1/attn/hbqe,hbke->hbqk/dot_general"
    -> ("TransformerXL/TransformerXL._layers/layer_*/attn", True). The path ends at the primitive, at
    an einsum's equation or at a function jitted inside the step (jax.random's, jnp.take's); a scope
    met again (a rematerialised layer records its path twice) counts once."""
    if ":" in op_name and (combined := _COMBINED.match(op_name)):
        step, parts, primitive = combined.groups()
        found = [scope_of(f"{step or ''}{part}/{primitive}") for part in parts.split(":")]
        common = os.path.commonprefix([scope.split("/") for scope, _ in found])
        return "/".join(common) or OUTSIDE, any(backward for _, backward in found)
    segments = op_name.split("/")[:-1]  # without the primitive
    if segments and segments[0].startswith("jit("):
        segments = segments[1:]  # the step's own jit
    scope = []
    for segment in segments:
        while match := _TRANSFORM.match(segment):
            segment = match.group(1)
        if segment.startswith("jit(") or "->" in segment:
            break
        segment = re.sub(r"_\d+$", "_*", segment)
        if segment and segment not in _CONTROL and segment not in scope:
            scope.append(segment)
    return "/".join(scope) or OUTSIDE, "transpose(" in op_name


def op_scopes(hlo_text: str) -> dict[str, tuple[str, bool]]:
    """Each instruction of a compiled module's text -> its (scope, backward): its own op_name's, or
    for a fusion the commonest among the ops it calls (nested fusions included) that have a
    scope. An op that has neither (one XLA made: a copy, a dot it split off) takes the scope of its
    first operand that has one, or else that of the op whose loop body or callee holds it;
    (OUTSIDE, False) if none has."""
    own, calls, operands, members, caller = {}, {}, {}, collections.defaultdict(list), {}
    computation = None
    for line in hlo_text.splitlines():
        if (match := _COMPUTATION.match(line)) and " = " not in line:
            computation = match.group(1)
            continue
        if not (match := _INSTRUCTION.match(line)):
            continue
        name = match.group(1)
        members[computation].append(name)
        operands[name] = re.findall(r"%([\w.\-]+)", line[match.end():])
        for called in re.findall(r"\b(?:calls|body|condition|to_apply|branch_computations)=\{?%?([\w.\-]+)", line):
            caller.setdefault(called, name)
        if op_name := re.search(r'op_name="([^"]*)"', line):
            own[name] = scope_of(op_name.group(1))
        if called := re.search(r"\bcalls=%?([\w.\-]+)", line):  # fusions, not a call's or a reduction's to_apply
            calls[name] = called.group(1)

    def votes(computation, seen):
        found = collections.Counter()
        for member in members.get(computation, []):
            if member in own:
                found[own[member]] += 1
            if member in calls and calls[member] not in seen:
                found.update(votes(calls[member], seen | {calls[member]}))
        return found

    scopes = {name: own.get(name, (OUTSIDE, False)) for names in members.values() for name in names}
    for name, computation in calls.items():
        found = votes(computation, {computation})
        scoped = [scope for scope, _ in found.most_common() if scope[0] != OUTSIDE]
        if found:
            scopes[name] = scoped[0] if scoped else found.most_common(1)[0][0]

    def inherited(name, computation):
        candidates = [scopes.get(operand, (OUTSIDE, False)) for operand in operands[name]]
        candidates.append(scopes.get(caller.get(computation), (OUTSIDE, False)))
        return next((scope for scope in candidates if scope[0] != OUTSIDE), None)

    changed = True
    while changed:  # callees are printed before their callers: repeat until nothing moves
        changed = False
        for computation, names in members.items():
            for name in names:
                if name not in own and scopes[name][0] == OUTSIDE and (scope := inherited(name, computation)):
                    scopes[name], changed = scope, True
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


def _own_times(events: list[dict]) -> list[float]:
    """Each event's duration less those of the events directly inside it on its thread."""
    own = [event.get("dur", 0.0) for event in events]
    threads = collections.defaultdict(list)
    for i, event in enumerate(events):
        threads[event.get("pid"), event.get("tid")].append(i)
    end = [event["ts"] + duration for event, duration in zip(events, own)]
    for indices in threads.values():
        enclosing = []
        for i in sorted(indices, key=lambda i: (events[i]["ts"], -end[i])):
            while enclosing and events[i]["ts"] >= end[enclosing[-1]]:
                enclosing.pop()
            if enclosing:
                own[enclosing[-1]] -= end[i] - events[i]["ts"]
            enclosing.append(i)
    return own


def by_scope(trace_path: str | Path, hlo_text: str, steps: int) -> dict:
    """The module's op time per step and device from a trace: per scope (forward and backward
    milliseconds, share of all op time), and the ten longest ops."""
    module = re.match(r"HloModule ([\w.\-]+)", hlo_text).group(1)
    scopes = op_scopes(hlo_text)
    for loop in _LOOP.findall(hlo_text):
        scopes.pop(loop, None)
    with gzip.open(trace_path) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    device_pids = {event["pid"] for event in events if event.get("ph") == "M" and event.get("name") == "process_name"
                   and str((event.get("args") or {}).get("name", "")).startswith("/device:")}
    ops = [event for event in events if event.get("ph") == "X" and (event.get("args") or {}).get("hlo_op") in scopes
           and event["args"].get("hlo_module", module) == module]
    if any(event["pid"] in device_pids for event in ops):  # not the host's launches too
        ops = [event for event in ops if event["pid"] in device_pids]
    if not ops:
        raise RuntimeError(f"the trace {trace_path} has no timed ops of {module}; see xlpretrain/train/profile.py")
    devices = len({event["args"].get("device_ordinal", event["pid"]) for event in ops})
    per_op = collections.Counter()
    for event, microseconds in zip(ops, _own_times(ops)):
        per_op[event["args"]["hlo_op"]] += microseconds / 1000 / steps / devices
    total = sum(per_op.values())
    rows = collections.defaultdict(lambda: {"forward_ms": 0.0, "backward_ms": 0.0})
    for op, ms in per_op.items():
        scope, backward = scopes[op]
        rows[scope]["backward_ms" if backward else "forward_ms"] += ms
    table = sorted(({"scope": scope, **row, "share": (row["forward_ms"] + row["backward_ms"]) / total}
                    for scope, row in rows.items()), key=lambda row: -row["share"])
    longest = [{"op": op, "scope": scopes[op][0], "backward": scopes[op][1], "ms": ms}
               for op, ms in per_op.most_common(10)]
    return {"trace": str(trace_path), "steps": steps, "devices": devices, "op_ms_per_step": total, "scopes": table,
            "longest_ops": longest}


def table(profile: dict, step_ms: float) -> str:
    """`by_scope`'s result as the table `bench --profile` prints."""
    if "error" in profile:
        return f"profile            failed: {profile['error']}"
    width = max(len(row["scope"]) for row in profile["scopes"])
    lines = [f"op time per step   {profile['op_ms_per_step']:.1f} ms against {step_ms:.1f} ms of wall time "
             f"(a device's, over {profile['steps']} traced steps; ops running at once overlap)",
             f"{'scope':<{width}}  {'forward ms':>10}  {'backward ms':>11}  {'share':>6}"]
    lines += [f"{row['scope']:<{width}}  {row['forward_ms']:>10.1f}  {row['backward_ms']:>11.1f}  {row['share']:>6.1%}"
              for row in profile["scopes"]]
    lines.append("longest ops:")
    lines += [f"  {row['op']:<32} {row['ms']:>7.2f} ms  {row['scope']}{' (backward)' if row['backward'] else ''}"
              for row in profile["longest_ops"]]
    lines.append(f"trace              {profile['trace']}")
    return "\n".join(lines)
