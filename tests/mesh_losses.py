"""Run in a subprocess by tests/test_meshes.py, with XLA_FLAGS giving it fake CPU devices: for each
case of argv[1] (JSON: a list of [name, config spec, overrides, meshes], each mesh {data, fsdp,
tensor}) and each of its meshes that uses every device, trains 3 steps from the same seed and
prints one JSON line with the losses and the XLA compilations of each step."""

import collections
import json
import math
import sys

import jax
import jax.monitoring

from xlpretrain import config as config_lib
from xlpretrain.train.experiment import Experiment


COMPILED = collections.Counter()  # XLA compilations (or compilation-cache reads) by function name


def _count_compilation(event: str, seconds: float, fun_name: str = "", **_) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        COMPILED[fun_name] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compilation)


def train(config, steps: int = 5, compilations: list | None = None):
    """(the losses of `steps` train steps from the config's seed, the final TrainState); appends to
    `compilations` what each step compiled, {function name: count}."""
    exp = Experiment(config)
    state, step_fn, stream = exp.init_state(), exp.train_step(), exp.stream("train")
    out = []
    with exp.context():
        for step in range(steps):
            COMPILED.clear()
            state, metrics = step_fn(state, exp.to_global(stream.batch_at(step)))
            out.append(float(metrics["loss"]))
            if compilations is not None:
                compilations.append(dict(COMPILED))
    return out, state


def main(cases: list) -> None:
    for name, spec, overrides, meshes in cases:
        for mesh in meshes:
            if math.prod(mesh.values()) != jax.device_count():
                continue
            config = config_lib.override(config_lib.load(spec), [o.removeprefix("--config.") for o in overrides])
            config.mesh.update(**mesh)
            compilations = []
            losses = train(config, steps=3, compilations=compilations)[0]
            print(json.dumps({"case": name, "mesh": mesh, "losses": losses, "compilations": compilations}),
                  flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
