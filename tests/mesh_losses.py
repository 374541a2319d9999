"""Run in a subprocess by tests/test_meshes.py, with XLA_FLAGS giving it fake CPU devices: for each
case of argv[1] (JSON: a list of [name, config spec, overrides, meshes], each mesh {data, fsdp,
tensor}) and each of its meshes that uses every device, trains 5 steps from the same seed and
prints one JSON line with the losses."""

import json
import math
import sys

import jax

from xlpretrain import config as config_lib
from xlpretrain.train.experiment import Experiment


def train(config, steps: int = 5):
    """(the losses of `steps` train steps from the config's seed, the final TrainState)."""
    exp = Experiment(config)
    state, step_fn, stream = exp.init_state(), exp.train_step(), exp.stream("train")
    out = []
    with exp.context():
        for step in range(steps):
            state, metrics = step_fn(state, exp.to_global(stream.batch_at(step)))
            out.append(float(metrics["loss"]))
    return out, state


def main(cases: list) -> None:
    for name, spec, overrides, meshes in cases:
        for mesh in meshes:
            if math.prod(mesh.values()) != jax.device_count():
                continue
            config = config_lib.override(config_lib.load(spec), [o.removeprefix("--config.") for o in overrides])
            config.mesh.update(**mesh)
            print(json.dumps({"case": name, "mesh": mesh, "losses": train(config)[0]}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
