"""Options that trade memory, precision or compile time for nothing else: every remat policy and
gradient accumulation over micro-batches train with the same losses (and, for micro-batches, the
same memory rows) as the plain step, `plan` counts the activation memory they save, bfloat16 follows
float32, and the scanned layers compute what the unrolled ones do."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesh_losses import train
from xlpretrain import config as config_lib
from xlpretrain.convert import checkpoints
from xlpretrain.errors import UserError
from xlpretrain.models.precision import einsum_float32
from xlpretrain.models.transformer import Memory, TransformerXL
from xlpretrain.train import plan
from xlpretrain.train.experiment import Experiment

OVERRIDES = ["data.quickstart.train_tokens=20000", "data.quickstart.valid_tokens=2000",
             "data.quickstart.test_tokens=2000", "model.n_layer=2", "model.d_model=32", "model.n_head=2",
             "model.d_head=16", "model.d_inner=64", "model.dropout=0.0", "model.mem_len=8", "train.batch_size=8",
             "train.tgt_len=8", "train.warmup_steps=2", "eval.batch_size=8"]


def _config(cache_dir, extra=()):
    return config_lib.override(config_lib.load("configs/quickstart.py"),
                               OVERRIDES + [f"data.cache_dir={cache_dir}", *extra])


def _train(config):
    losses, state = train(config, steps=4)
    return np.asarray(losses), jax.tree.map(np.asarray, state.memory)


@pytest.fixture(scope="module")
def reference(cache_dir):
    return _train(_config(cache_dir))


# The third policy, dots_saveable, runs in the scanned-layers test below.
@pytest.mark.parametrize("extra", [["model.remat=full", "train.micro_batches=2"],
                                   ["model.remat=dots_with_no_batch_dims_saveable", "train.micro_batches=4"]])
def test_same_losses_and_memory_as_the_plain_step(extra, reference, cache_dir):
    losses, memory = _train(_config(cache_dir, extra))
    np.testing.assert_allclose(losses, reference[0], rtol=1e-5)
    np.testing.assert_allclose(memory.hidden, reference[1].hidden, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(memory.valid, reference[1].valid)


def test_plan_counts_the_activations_they_save(cache_dir):
    def activations(*extra):
        return plan.plan(_config(cache_dir, extra))["bytes_per_device"]["activations"]

    plain = activations()
    assert activations("model.remat=full") < plain / 2
    assert activations("train.micro_batches=2") == pytest.approx(plain / 2, rel=0.05)


def test_xla_flops_are_not_reported_for_scanned_layers(cache_dir):
    """XLA counts the layers' loop body once, so its count would be that of one layer (a 4-layer model:
    127k of 343k FLOPs per token). test_plan checks the count of unrolled layers."""
    assert plan.plan(_config(cache_dir, ["model.scan_layers=True"]), compile=True)["compiled"]["flops_per_token"] is None


def test_micro_batches_must_split_the_batch_evenly(cache_dir):
    with pytest.raises(Exception, match="train.micro_batches=3 must divide train.batch_size=8"):
        Experiment(_config(cache_dir, ["train.micro_batches=3"]))


def test_bfloat16_computation_follows_float32_with_fewer_activation_bytes(reference, cache_dir):
    config = _config(cache_dir, ["model.dtype=bfloat16"])
    losses, memory = _train(config)
    assert memory.hidden.dtype == np.float32
    np.testing.assert_allclose(losses, reference[0], rtol=2e-2)
    # Every matmul of the step takes bfloat16 operands. (The losses cannot show it on a CPU: XLA may
    # compute in float32 what the program rounds to bfloat16, and the XLA of jaxlib 0.11 does.)
    assert set(_matmul_operand_dtypes(plan.gradient_jaxpr(Experiment(config)))) == {jnp.dtype(jnp.bfloat16)}
    activations = plan.plan(config)["bytes_per_device"]["activations"]
    assert activations < 0.8 * plan.plan(_config(cache_dir))["bytes_per_device"]["activations"]


def test_a_float32_product_of_bfloat16_operands_has_bfloat16_gradients():
    a, b = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 32))

    def grads(a, b):
        return jax.grad(lambda a, b: jnp.sum(jnp.sin(einsum_float32("ie,je->ij", a, b))), argnums=(0, 1))(a, b)

    exact = grads(a, b)
    rounded = grads(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16))
    assert einsum_float32("ie,je->ij", a.astype(jnp.bfloat16), b).dtype == jnp.float32
    for g, reference in zip(rounded, exact):
        assert g.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(g, np.float32), reference, atol=0.05 * float(jnp.abs(reference).max()))


def _matmul_operand_dtypes(jaxpr):
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            yield from (x.aval.dtype for x in eqn.invars)
        for called in plan.called_jaxprs(eqn.params):
            yield from _matmul_operand_dtypes(called)


def _stack_layers(params):
    """The unrolled model's parameters in the scanned model's layout: layer_0 ... layer_{n-1} of each
    backbone stacked under layers/layer."""
    if not isinstance(params, dict):
        return params
    out = {k: _stack_layers(v) for k, v in params.items() if not k.startswith("layer_")}
    n = sum(k.startswith("layer_") for k in params)
    if n:
        out["layers"] = {"layer": jax.tree.map(lambda *x: np.stack(x), *[params[f"layer_{i}"] for i in range(n)])}
    return out


def _assert_same(plain, scanned):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), _stack_layers(plain),
                 jax.tree.map(np.asarray, scanned))


@pytest.mark.parametrize("extra", [[], ["model.untie_r=True", "model.remat=dots_saveable"]],
                         ids=["shared-r", "untied-r-remat"])
def test_scanned_layers_compute_what_the_unrolled_ones_do(extra, cache_dir):
    """The unrolled model's parameters, stacked under `layers`, give the scanned model the same
    losses, gradients and memory over two segments."""
    plain = Experiment(_config(cache_dir, extra))
    scanned = Experiment(_config(cache_dir, extra + ["model.scan_layers=True"]))
    params = jax.tree.map(np.asarray, plain.init_state().params)
    assert jax.tree.structure(_stack_layers(params)) == jax.tree.structure(scanned.state_shapes.params)
    stream = plain.stream("train")
    results = []
    for exp, p in ((plain, params), (scanned, _stack_layers(params))):
        grad = jax.jit(jax.value_and_grad(exp.objective.loss, has_aux=True), static_argnums=4)
        memory, out = exp.objective.init_memory(8), []
        for step in range(2):
            (loss, (memory, _)), grads = grad(p, stream.batch_at(step), memory, jax.random.PRNGKey(0), False)
            out.append((float(loss), np.asarray(memory.hidden), grads))
        results.append(out)
    for (loss, memory, grads), (scanned_loss, scanned_memory, scanned_grads) in zip(*results):
        assert scanned_loss == pytest.approx(loss, rel=1e-6)
        np.testing.assert_allclose(scanned_memory, memory, rtol=1e-5, atol=1e-6)
        _assert_same(grads, scanned_grads)


def test_scanned_encoders_compute_what_the_unrolled_ones_do():
    """ELECTRA's generator and discriminator (BERT's encoder, embeddings shared) scanned."""
    from test_encoders import encoder_batch, objective

    plain, params = objective("rtd")
    scanned, _ = objective("rtd", model__scan_layers=True)
    def loss(objective, params):
        return objective.loss(params, encoder_batch(), (), jax.random.PRNGKey(5), False)[0]

    results = [jax.jit(jax.value_and_grad(lambda p, o=o: loss(o, p)))(p)
               for o, p in ((plain, params), (scanned, _stack_layers(params)))]
    assert results[1][0] == pytest.approx(float(results[0][0]), rel=1e-6)
    _assert_same(results[0][1], results[1][1])


def test_scanned_two_stream_attention_computes_what_the_unrolled_one_does():
    """XLNet's two streams (untied relative and segment biases) over a segment and its memory."""
    from test_xlnet import BATCH, MODEL, sample, segment

    tokens, types, starts, functional = segment(0)
    order, _, _ = sample(jax.random.PRNGKey(0), jnp.asarray(starts), jnp.asarray(functional))
    plain, scanned = TransformerXL(MODEL), TransformerXL(dataclasses.replace(MODEL, scan_layers=True))
    params = nn.meta.unbox(jax.jit(plain.init)(jax.random.PRNGKey(1), tokens, Memory.empty(MODEL, BATCH), types,
                                               permutation=order)["params"])
    outputs = []
    for module, p in ((plain, params), (scanned, _stack_layers(params))):
        forward = jax.jit(lambda p, memory, module=module: module.apply({"params": p}, tokens, memory, types,
                                                                       permutation=order))
        g, memory = forward(p, Memory.empty(MODEL, BATCH))
        outputs.append(forward(p, memory))
    np.testing.assert_allclose(outputs[1][0], outputs[0][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs[1][1].hidden, outputs[0][1].hidden, rtol=1e-5, atol=1e-6)


def test_conversion_refuses_scanned_layers(cache_dir):
    with pytest.raises(UserError, match="set model.scan_layers=False"):
        checkpoints.import_checkpoint("unused", None, _config(cache_dir, ["model.scan_layers=True"]), "unused")
