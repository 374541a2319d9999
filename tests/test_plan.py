"""`xlpretrain plan`: its FLOP count against one worked out by hand, and its FLOP and memory
estimates, made before compiling, against XLA's cost and memory analysis of the compiled train
step, on 1 CPU device and on a mesh of 8 fake ones."""

import json

import jax
import jax.numpy as jnp
import pytest

from conftest import run_cli
from xlpretrain import config as config_lib
from xlpretrain.train import plan
from xlpretrain.train.experiment import Experiment

MIXED = ["--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2", "--config.eval.batch_size=8"]


def _plan(args: list[str], cache_dir, devices: int = 1, compile: bool = True) -> dict:
    return json.loads(run_cli(["plan", "--json"] + ["--compile"] * compile + args, cache_dir, devices).stdout)


def _state(estimate: dict) -> int:
    return estimate["params"] + estimate["optimizer"] + estimate["memory"] + estimate["batch"]


def test_matmul_flops_counts_each_product_as_often_as_it_runs():
    def f(w, v, x):
        def body(h, _):
            return jnp.tanh(h @ w), None                        # [2, 3] x [3, 3], 4 times

        h, _ = jax.lax.scan(body, x, None, length=4)
        small = jax.lax.cond(h.sum() > 0, lambda: h @ v, lambda: jax.jit(jnp.dot)(h @ w, v))  # the costlier branch
        return jnp.einsum("bi,bi->", small, small)              # contracts both axes: 2 x 2 x 5

    jaxpr = jax.make_jaxpr(f)(jnp.ones((3, 3)), jnp.ones((3, 5)), jnp.ones((2, 3)))
    assert plan.matmul_flops(jaxpr.jaxpr) == 4 * 2 * 2 * 3 * 3 + (2 * 2 * 3 * 3 + 2 * 2 * 3 * 5) + 2 * 2 * 5

    def loop(w, x):
        return jax.lax.while_loop(lambda h: h.sum() < 10, lambda h: h @ w, x)

    with pytest.raises(ValueError, match="while loop"):
        plan.matmul_flops(jax.make_jaxpr(loop)(jnp.ones((3, 3)), jnp.ones((2, 3))).jaxpr)


def test_the_flops_of_a_transformer_xl_step_are_those_worked_out_from_its_shapes():
    B, T, M, d, H, e, F, V, L = 2, 8, 4, 16, 2, 8, 32, 50, 2
    config = config_lib.load("configs/transformer_xl/bench_small.py")
    config_lib.override(config, [f"model.vocab_size={V}", f"model.n_layer={L}", f"model.d_model={d}",
                                 f"model.n_head={H}", f"model.d_head={e}", f"model.d_inner={F}", f"model.mem_len={M}",
                                 f"train.batch_size={B}", f"train.tgt_len={T}", "eval.batch_size=2",
                                 "model.remat='full'"])
    # Attended keys; distances K-1 ... -1 (the last a zero row, read only by masked scores, that
    # makes rel_shift one slice).
    A, K, R = H * e, M + T, M + T + 1
    # Forward multiply-adds of one layer, and which of them the backward pass repeats twice (the
    # weight's gradient and the input's) or once (the weight's: the memory and the sinusoids need
    # no gradient). The recomputation of remat is not model work.
    twice = B * T * d * A + B * T * d * 2 * A + 2 * B * T * K * A + B * T * R * A + B * T * A * d + 2 * B * T * d * F
    once = B * M * d * 2 * A + (R - 1) * d * A
    model = L * (3 * twice + 2 * once) + 3 * B * T * d * V   # the tied output softmax, every token
    assert plan.model_flops_per_token(Experiment(config, with_data=False)) == 2 * model / (B * T)


# wt103_base (adaptive input and softmax) with 2 of its 16 layers: the same kinds of state and
# activations in a sixth of the compile time. Parameter counts: test_model and test_paper_configs.
@pytest.mark.slow
@pytest.mark.parametrize("config, extra", [("bench_small", []), ("wt103_base", ["--config.model.n_layer=2"])])
def test_estimates_agree_with_the_compiled_step(config, extra, cache_dir):
    report = _plan(["--config", f"configs/transformer_xl/{config}.py"] + extra, cache_dir)
    estimate, compiled = report["bytes_per_device"], report["compiled"]["bytes_per_device"]
    assert abs(compiled["total"] / estimate["total"] - 1) < 0.2, (estimate, compiled)
    assert abs(compiled["arguments"] / _state(estimate) - 1) < 0.01
    # XLA also counts the element-wise work: 2% of bench_small's FLOPs.
    assert abs(report["compiled"]["flops_per_token"] / report["flops_per_token"] - 1) < 0.05


@pytest.mark.slow
def test_the_shardings_split_state_as_xla_does_on_a_mesh(cache_dir):
    one = _plan(["--config", "configs/transformer_xl/wt2.py", "--config.eval.batch_size=8"], cache_dir, compile=False)
    mesh = _plan(["--config", "configs/transformer_xl/wt2.py"] + MIXED, cache_dir, devices=8)
    assert mesh["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
    compiled = mesh["compiled"]["bytes_per_device"]["arguments"]
    assert abs(compiled / _state(mesh["bytes_per_device"]) - 1) < 0.01
    assert compiled < _state(one["bytes_per_device"]) / 2.5
