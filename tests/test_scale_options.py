"""Options that trade memory or speed for nothing else: every remat policy and gradient accumulation
over micro-batches train with the same losses (and, for micro-batches, the same memory rows) as the
plain step, and `plan` counts the activation memory they save."""

import jax
import numpy as np
import pytest

from xlpretrain import config as config_lib
from xlpretrain.train import plan
from xlpretrain.train.experiment import Experiment

OVERRIDES = ["data.quickstart.train_tokens=20000", "data.quickstart.valid_tokens=2000",
             "data.quickstart.test_tokens=2000", "model.n_layer=2", "model.d_model=32", "model.n_head=2",
             "model.d_head=16", "model.d_inner=64", "model.dropout=0.0", "model.mem_len=8", "train.batch_size=8",
             "train.tgt_len=8", "train.warmup_steps=2", "eval.batch_size=8"]


def _config(cache_dir, extra=()):
    return config_lib.override(config_lib.load("configs/quickstart.py"),
                               OVERRIDES + [f"data.cache_dir={cache_dir}", *extra])


def _train(config, steps: int = 4):
    exp = Experiment(config)
    state, step_fn, stream = exp.init_state(), exp.train_step(), exp.stream("train")
    losses = []
    with exp.context():
        for step in range(steps):
            state, metrics = step_fn(state, exp.to_global(stream.batch_at(step)))
            losses.append(float(metrics["loss"]))
    return np.asarray(losses), jax.tree.map(np.asarray, state.memory)


@pytest.fixture(scope="module")
def reference(cache_dir):
    return _train(_config(cache_dir))


@pytest.mark.parametrize("extra", [["model.remat=full"], ["model.remat=dots_saveable"],
                                   ["model.remat=dots_with_no_batch_dims_saveable"], ["train.micro_batches=2"],
                                   ["train.micro_batches=4", "model.remat=full"]])
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


def test_micro_batches_must_split_the_batch_evenly(cache_dir):
    with pytest.raises(Exception, match="train.micro_batches=3 must divide train.batch_size=8"):
        Experiment(_config(cache_dir, ["train.micro_batches=3"]))


def test_bfloat16_computation_follows_float32_with_fewer_activation_bytes(reference, cache_dir):
    config = _config(cache_dir, ["model.dtype=bfloat16"])
    losses, memory = _train(config)
    assert memory.hidden.dtype == np.float32
    np.testing.assert_allclose(losses, reference[0], rtol=2e-2)
    assert not np.allclose(losses, reference[0], rtol=1e-5)  # the matmuls did run in bfloat16
    activations = plan.plan(config)["bytes_per_device"]["activations"]
    assert activations < 0.8 * plan.plan(_config(cache_dir))["bytes_per_device"]["activations"]
