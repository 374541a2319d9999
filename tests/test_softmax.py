"""The adaptive input and softmax (models/softmax.py) against their definitions. Their agreement with
the official code's layers, weights imported, is in test_model.py (HuggingFace's port)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xlpretrain.models.softmax import AdaptiveSoftmax, bins

VOCAB, D = 60, 16


def build(**kwargs):
    layer = AdaptiveSoftmax(VOCAB, D, D, init_std=0.5, proj_init_std=0.5, **kwargs)
    hidden = jax.random.normal(jax.random.PRNGKey(1), (3, 5, D))
    targets = jax.random.randint(jax.random.PRNGKey(2), (3, 5), 0, VOCAB)
    params = nn.meta.unbox(layer.init(jax.random.PRNGKey(0), hidden, targets, method=AdaptiveSoftmax.nll))
    # Random output biases, so that they are tested too.
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: jax.random.normal(jax.random.PRNGKey(3), x.shape) if "bias" in str(path[-1]) else x, params)
    return layer, params, hidden, targets


def test_without_cutoffs_it_is_the_full_softmax():
    layer, params, hidden, targets = build()
    p = params["params"]
    log_probs = jax.nn.log_softmax(hidden @ p["embedding"].T + p["bias"])
    expected = -np.take_along_axis(np.asarray(log_probs), np.asarray(targets)[..., None], -1)[..., 0]
    nll = layer.apply(params, hidden, targets, method=AdaptiveSoftmax.nll)
    np.testing.assert_allclose(nll, expected, rtol=1e-5)
    assert set(p) == {"embedding", "bias"}


@pytest.mark.parametrize("kwargs", [
    dict(cutoffs=(10, 30)),
    dict(cutoffs=(10, 30, 45), div_val=2, tie_projs=(False, True, False, True)),
    dict(cutoffs=(7,), div_val=4, proj_same_dim=False),
], ids=["div1", "div2-some-tied", "div4-tf-projections"])
def test_adaptive_distribution_sums_to_one_and_nll_reads_it(kwargs):
    layer, params, hidden, targets = build(**kwargs)
    log_probs = layer.apply(params, hidden, method=AdaptiveSoftmax.logits)
    assert log_probs.shape == (3, 5, VOCAB)
    np.testing.assert_allclose(jnp.exp(log_probs).sum(-1), 1.0, rtol=1e-5)
    nll = layer.apply(params, hidden, targets, method=AdaptiveSoftmax.nll)
    np.testing.assert_allclose(nll, -np.take_along_axis(np.asarray(log_probs), np.asarray(targets)[..., None], -1)[..., 0],
                               rtol=1e-5, atol=1e-5)
    # Every word id gets a non-zero vector of the model's width (test_model.py compares the vectors with HuggingFace's).
    tokens = jnp.arange(VOCAB)[None]
    vectors = layer.apply(params, tokens, method=AdaptiveSoftmax.embed)
    assert vectors.shape == (1, VOCAB, D) and np.all(np.abs(np.asarray(vectors)).sum(-1) > 0)


def test_bins_follow_the_official_projection_rules():
    # wt103 large: div_val 4, every bin projected, tails tied (tie_projs F,T,T,T).
    large = bins(267_735, 1024, 1024, (20_000, 40_000, 200_000), 4, (False, True, True, True))
    assert [b.width for b in large] == [1024, 256, 64, 16]
    assert [(b.emb_proj, b.out_proj) for b in large] == [
        ("emb_proj_0", "out_proj_0"), ("emb_proj_1", "emb_proj_1"), ("emb_proj_2", "emb_proj_2"),
        ("emb_proj_3", "emb_proj_3")]
    # wt103 base: div_val 1 and d_embed = d_model: no projection at all.
    assert all(b.emb_proj is None and b.out_proj is None for b in bins(267_735, 410, 410, (20_000, 40_000, 200_000)))
    # TF lm1b: proj_same_dim=False drops the projection of the full-width bin only.
    lm1b = bins(793_470, 1024, 1024, (60_000, 100_000, 640_000), 4, (), proj_same_dim=False)
    assert [b.emb_proj for b in lm1b] == [None, "emb_proj_1", "emb_proj_2", "emb_proj_3"]


def test_tail_capacity_computes_the_same_loss_and_gradients():
    """Bins [10, 30), [30, 45), [45, 60) hold 4, 3 and 3 of the 15 targets; capacities of 4, 5 and 2
    tokens: the first two gather their tokens (one exactly full, one with spare rows), the third
    overflows and computes every token. The NLL and the gradients equal those of every bin computed
    for every token."""
    targets = jnp.asarray([[0, 10, 29, 30, 44], [45, 59, 5, 11, 31], [50, 9, 12, 2, 3]])
    kwargs = dict(cutoffs=(10, 30, 45), div_val=2, tie_projs=(False, True, False, True))
    layer, params, hidden, _ = build(**kwargs)
    gathered = AdaptiveSoftmax(VOCAB, D, D, init_std=0.5, proj_init_std=0.5, tail_capacity=(4 / 15, 5 / 15, 2 / 15),
                               **kwargs)

    def loss(layer):
        def total(params, hidden):
            nll = layer.apply(params, hidden, targets, method=AdaptiveSoftmax.nll)
            return jnp.sum(nll * jnp.arange(1, 16).reshape(3, 5)), nll  # a different weight per token
        return jax.jit(jax.value_and_grad(total, argnums=(0, 1), has_aux=True))(params, hidden)

    (_, expected), expected_grads = loss(layer)
    (_, nll), grads = loss(gathered)
    np.testing.assert_allclose(nll, expected, rtol=1e-6, atol=1e-6)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
