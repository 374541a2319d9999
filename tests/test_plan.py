"""`xlpretrain plan`: its FLOP and memory estimates, made before compiling, against XLA's cost and
memory analysis of the compiled train step, on 1 CPU device and on a mesh of 8 fake ones."""

import json

import pytest

from conftest import run_cli

MIXED = ["--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2", "--config.eval.batch_size=8"]


def _plan(args: list[str], cache_dir, devices: int = 1, compile: bool = True) -> dict:
    return json.loads(run_cli(["plan", "--json"] + ["--compile"] * compile + args, cache_dir, devices).stdout)


def _state(estimate: dict) -> int:
    return estimate["params"] + estimate["optimizer"] + estimate["memory"] + estimate["batch"]


# wt103_base (adaptive input and softmax) with 2 of its 16 layers: the same kinds of state and
# activations in a sixth of the compile time. Parameter counts: test_model and test_paper_configs.
@pytest.mark.slow
@pytest.mark.parametrize("config, extra", [("bench_small", []), ("wt103_base", ["--config.model.n_layer=2"])])
def test_estimates_agree_with_the_compiled_step(config, extra, cache_dir):
    report = _plan(["--config", f"configs/transformer_xl/{config}.py"] + extra, cache_dir)
    estimate, compiled = report["bytes_per_device"], report["compiled"]["bytes_per_device"]
    assert abs(compiled["total"] / estimate["total"] - 1) < 0.2, (estimate, compiled)
    assert abs(compiled["arguments"] / _state(estimate) - 1) < 0.01
    assert abs(report["compiled"]["flops_per_token"] / report["flops_per_token"] - 1) < 0.1


@pytest.mark.slow
def test_the_shardings_split_state_as_xla_does_on_a_mesh(cache_dir):
    one = _plan(["--config", "configs/transformer_xl/wt2.py", "--config.eval.batch_size=8"], cache_dir, compile=False)
    mesh = _plan(["--config", "configs/transformer_xl/wt2.py"] + MIXED, cache_dir, devices=8)
    assert mesh["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
    compiled = mesh["compiled"]["bytes_per_device"]["arguments"]
    assert abs(compiled / _state(mesh["bytes_per_device"]) - 1) < 0.01
    assert compiled < _state(one["bytes_per_device"]) / 2.5
