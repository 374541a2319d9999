"""XLNet's permutation objective: the sampled targets and orders, and that the two-stream model
leaks nothing the order hides (property-based over random orders, tokens and memories)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlpretrain.models.transformer import Memory, TransformerXL, TransformerXLConfig
from xlpretrain.objectives import permutation

VOCAB, BATCH, LENGTH, REUSE, PREDICT = 50, 2, 24, 12, 8
MODEL = TransformerXLConfig(vocab_size=VOCAB, n_layer=2, d_model=32, n_head=2, d_head=16, d_inner=64, dropout=0.0,
                            mem_len=8, reuse_len=REUSE, bi_data=True, causal=False, untie_r=True,
                            activation="gelu_tanh", layer_norm_eps=1e-12, init_std=0.3, flavor="xlnet")
SEP, CLS = 1, 2


_sample = jax.jit(permutation.sample, static_argnums=range(4, 10))


def sample(key, word_starts, functional, reverse=None, num_predict=PREDICT, perm_size=REUSE // 2):
    reverse = jnp.zeros(word_starts.shape[0], bool) if reverse is None else reverse
    return _sample(key, word_starts, functional, reverse, REUSE, num_predict, perm_size, 6, 1, 5)


def segment(seed: int):
    """Random tokens in XLNet's layout (SEP at 17 and 22, CLS at 23), word starts and segment ids."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, VOCAB, (BATCH, LENGTH)).astype(np.int32)
    tokens[:, [17, 22]], tokens[:, 23] = SEP, CLS
    types = np.zeros((BATCH, LENGTH), np.int32)
    types[:, 18:23], types[:, 23] = 1, 2
    return tokens, types, rng.random((BATCH, LENGTH)) < 0.6, np.isin(tokens, [SEP, CLS])


# --- sampling -------------------------------------------------------------------------------------

def test_exactly_num_predict_targets_never_functional_tokens():
    tokens, _, starts, functional = segment(0)
    keys = jax.random.split(jax.random.PRNGKey(0), 50)
    draw = jax.jit(jax.vmap(lambda k, f: permutation.sample(k, jnp.asarray(starts), f, jnp.zeros(BATCH, bool), REUSE,
                                                             PREDICT, REUSE // 2, 6, 1, 5)[1:], in_axes=(0, None)))
    _, weights = draw(keys, jnp.zeros_like(jnp.asarray(functional)))
    assert np.all(np.asarray(weights).sum(-1) == PREDICT)
    positions, weights = draw(keys, jnp.asarray(functional))
    positions, weights = np.asarray(positions), np.asarray(weights)
    counts = weights.sum(-1)
    # Fewer only where a drawn position was SEP or CLS (3 per row), which the original drops too.
    assert np.all((counts <= PREDICT) & (counts >= PREDICT - 3)) and np.any(counts < PREDICT)
    chosen = np.take_along_axis(np.broadcast_to(functional, (50, BATCH, LENGTH)), positions, axis=-1)
    assert not np.any(chosen & (weights > 0))
    # Half of the targets in each half (43 and 42 of 85 in the original: the first half rounds up).
    first = ((positions < REUSE) & (weights > 0)).sum(-1)
    assert np.all(first[np.asarray(counts) == PREDICT] == PREDICT - PREDICT // 2)


def span_lengths(mask: np.ndarray) -> np.ndarray:
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def test_span_lengths_follow_one_over_n_and_start_at_word_starts():
    n = 2048
    keys = jax.random.split(jax.random.PRNGKey(1), 20)
    spans = jax.jit(jax.vmap(lambda k, s: permutation.span_mask(k, s, n, 6, 1, 5), in_axes=(0, None)))
    lengths = np.concatenate([span_lengths(m) for m in np.asarray(spans(keys, jnp.ones(n, bool)))])
    observed = np.bincount(lengths, minlength=6)[1:]
    expected = (1 / np.arange(1, 6)) / np.sum(1 / np.arange(1, 6)) * len(lengths)
    chi2 = np.sum((observed - expected) ** 2 / expected)
    assert len(lengths) > 2000 and chi2 < 20.5, (observed, expected)  # 4 degrees of freedom: p ~ 4e-4
    starts = np.random.default_rng(0).random(n) < 0.3
    for mask in np.asarray(spans(keys, jnp.asarray(starts))):
        begins = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int)])) == 1)
        assert len(begins) > 10 and starts[begins].all()


def test_sampling_is_a_function_of_the_key():
    _, _, starts, functional = segment(0)
    args = (jnp.asarray(starts), jnp.asarray(functional))
    a, b, c = (sample(jax.random.fold_in(jax.random.PRNGKey(0), step), *args) for step in (3, 3, 4))
    assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b))
    assert not np.array_equal(a[1], c[1])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**30), perm_size=st.sampled_from([3, 6, 12]))
def test_visibility_is_a_factorization_order(seed, perm_size):
    tokens, _, starts, functional = segment(seed)
    reverse = jnp.asarray([False, True])
    order, positions, weights = sample(jax.random.PRNGKey(seed), jnp.asarray(starts), jnp.asarray(functional),
                                       reverse, perm_size=perm_size)
    can_see = np.asarray(order.can_see)
    for row in range(BATCH):
        see = can_see[row]
        target = np.zeros(LENGTH, bool)
        target[np.asarray(positions[row])[np.asarray(weights[row]) > 0]] = True
        context = ~target & ~functional[row]
        assert not see[:REUSE, REUSE:].any() and see[REUSE:, :REUSE].all()
        half = np.arange(LENGTH) >= REUSE
        same_half = half[:, None] == half[None, :]
        assert see[same_half & context[None, :]].all()               # context: seen by everyone
        assert not see[same_half & context[:, None] & ~context[None, :]].any()  # and sees no target or SEP/CLS
        assert not see[target, target].any()                         # a target never sees itself
        assert see[functional[row], functional[row]].all()
        for begin, end in ((0, REUSE), (REUSE, LENGTH)):             # the rest is a total order
            ordered = np.flatnonzero(~context[begin:end]) + begin
            seen = see[np.ix_(ordered, ordered)] & ~np.eye(len(ordered), dtype=bool)
            rank = seen.sum(axis=1)
            assert sorted(rank) == list(range(len(ordered)))
            assert np.array_equal(seen, rank[:, None] > rank[None, :])


# --- no leaks in the two-stream model -------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    """(forward, params): forward(tokens, types, order, memory) -> (query stream at the targets,
    content stream of the last layer, next memory), compiled once."""
    module = TransformerXL(MODEL)
    tokens, types, starts, functional = segment(0)
    order, _, _ = sample(jax.random.PRNGKey(0), jnp.asarray(starts), jnp.asarray(functional))
    params = jax.jit(module.init)(jax.random.PRNGKey(1), tokens, Memory.empty(MODEL, BATCH), types,
                                  permutation=order)["params"]

    @jax.jit
    def forward(tokens, types, order, memory):
        (g, memory), captured = module.apply({"params": params}, tokens, memory, types, permutation=order,
                                             capture_intermediates=lambda m, _: m.name == "layer_1")
        h, _ = captured["intermediates"]["layer_1"]["__call__"][0]
        return g, h, memory

    previous = segment(99)
    _, _, memory = forward(previous[0], previous[1], order, Memory.empty(MODEL, BATCH))
    return forward, memory


def draw(seed: int):
    tokens, types, starts, functional = segment(seed)
    order, positions, weights = sample(jax.random.PRNGKey(seed), jnp.asarray(starts), jnp.asarray(functional),
                                       jnp.asarray([False, True]))
    return tokens, types, functional, order, np.asarray(positions), np.asarray(weights) > 0


def resample(tokens, where, seed):
    """tokens with every position in `where` replaced by another token of ids 3 and up."""
    other = (tokens - 3 + np.random.default_rng(seed).integers(1, VOCAB - 3, tokens.shape)) % (VOCAB - 3) + 3
    return np.where(where, other, tokens)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**30), pick=st.integers(0, 10**6))
def test_a_target_sees_neither_itself_nor_what_follows_it(model, seed, pick):
    forward, memory = model
    tokens, types, _, order, positions, real = draw(seed)
    row = pick % BATCH
    slot = np.flatnonzero(real[row])[pick % real[row].sum()]
    target = positions[row, slot]
    hidden = np.zeros_like(tokens, bool)
    hidden[row] = ~np.asarray(order.can_see[row, target])
    assert hidden[row, target]
    g, _, _ = forward(tokens, types, order, memory)
    changed, _, _ = forward(resample(tokens, hidden, seed), types, order, memory)
    np.testing.assert_allclose(changed[row, slot], g[row, slot], atol=1e-5)
    # The check can fail: a position it does see changes its prediction.
    visible = np.zeros_like(hidden)
    visible[row] = ~hidden[row]
    seen, _, _ = forward(resample(tokens, visible, seed), types, order, memory)
    assert np.abs(np.asarray(seen[row, slot] - g[row, slot])).max() > 1e-3


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**30))
@pytest.mark.parametrize("half", [0, 1])
def test_context_tokens_do_not_see_the_targets(model, seed, half):
    """Within a half: the second half sees all of the first, targets included (the original's
    perm_mask), as it would see them in the memory."""
    forward, memory = model
    tokens, types, functional, order, positions, real = draw(seed)
    target = np.zeros_like(tokens, bool)
    for row in range(BATCH):
        target[row, positions[row, real[row]]] = True
    in_half = (np.arange(LENGTH) >= REUSE) == bool(half)
    target &= in_half
    context = ~target & ~functional & in_half
    _, h, _ = forward(tokens, types, order, memory)
    _, changed, _ = forward(resample(tokens, target, seed), types, order, memory)
    np.testing.assert_allclose(np.asarray(changed)[context], np.asarray(h)[context], atol=1e-5)
    assert np.abs(np.asarray(changed - h)[target]).max() > 1e-3  # targets see their own token


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**30))
def test_the_first_half_does_not_see_the_second(model, seed):
    forward, memory = model
    tokens, types, _, order, positions, real = draw(seed)
    second = np.zeros_like(tokens, bool)
    second[:, REUSE:] = True
    g, h, cached = forward(tokens, types, order, memory)
    changed_g, changed_h, changed_cached = forward(resample(tokens, second, seed), types, order, memory)
    np.testing.assert_allclose(np.asarray(changed_h)[:, :REUSE], np.asarray(h)[:, :REUSE], atol=1e-5)
    first_targets = real & (positions < REUSE)
    np.testing.assert_allclose(np.asarray(changed_g)[first_targets], np.asarray(g)[first_targets], atol=1e-5)
    np.testing.assert_allclose(changed_cached.hidden, cached.hidden, atol=1e-5)  # the next segment's memory
    assert np.abs(np.asarray(changed_h - h)[:, REUSE:]).max() > 1e-3
