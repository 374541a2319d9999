"""The Transformer-XL backbone against HuggingFace's port of the official code, and its invariants."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import TransfoXLConfig, TransfoXLLMHeadModel

from hf_oracle import randomize, shapes, state_of
from xlpretrain.convert.transfo_xl import from_hf_state_dict
from xlpretrain.models.attention import rel_shift
from xlpretrain.models.dropout import Dropout, keep_mask, random_words
from xlpretrain.models.positions import relative_distances
from xlpretrain.models.transformer import Memory, TransformerXL, TransformerXLConfig, attention_mask

SMALL = TransformerXLConfig(vocab_size=50, n_layer=2, d_model=32, n_head=4, d_head=8, d_inner=64,
                            dropout=0.0, dropatt=0.0, mem_len=6)


def run_segments(config, params, segments):
    """Log-probs [batch, q_len, vocab] of each segment in turn, carrying memory from an empty start."""
    model = TransformerXL(config)
    memory = Memory.empty(config, segments[0].shape[0])

    @jax.jit
    def step(memory, tokens):
        hidden, memory = model.apply({"params": params}, tokens, memory)
        logits = model.apply({"params": params}, hidden, method=TransformerXL.logits)
        return memory, jax.nn.log_softmax(logits)

    outputs = []
    for tokens in segments:
        memory, log_probs = step(memory, jnp.asarray(tokens))
        outputs.append(np.asarray(log_probs))
    return outputs, memory


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(mem_len=3, clamp_len=2, same_length=True, untie_r=True),
    dict(pre_lnorm=True, mem_len=8, same_length=True),
    dict(mem_len=0),
    dict(cutoffs=(10, 30), tie_projs=(False, True, True)),
    dict(cutoffs=(10, 30), div_val=2, tie_projs=(False, True, True), untie_r=True),
    dict(cutoffs=(20,), d_embed=16, tie_projs=(True, False)),
], ids=["default", "short-mem-clamp-same-untie", "pre-lnorm", "no-memory", "adaptive", "adaptive-div2-tied-tails",
        "adaptive-projected"])
def test_matches_huggingface_transfo_xl(overrides):
    """Same weights, same tokens: log-probabilities of three consecutive segments (memory carried
    from an empty start, as the official PyTorch code) agree with HuggingFace's TransfoXLLMHeadModel,
    whose random weights (adaptive softmax included: bins, projections, clusters) are imported."""
    config = dataclasses.replace(SMALL, **overrides)
    hf_config = TransfoXLConfig(
        vocab_size=config.vocab_size, cutoffs=list(config.cutoffs), adaptive=bool(config.cutoffs),
        div_val=config.div_val, d_model=config.d_model, d_embed=config.embed_size, n_head=config.n_head,
        d_head=config.d_head, d_inner=config.d_inner, n_layer=config.n_layer, mem_len=config.mem_len,
        clamp_len=config.clamp_len, same_length=config.same_length, untie_r=config.untie_r,
        pre_lnorm=config.pre_lnorm, dropout=0.0, dropatt=0.0)
    hf_config.tie_projs = list(config.tie_projs) or [False]
    hf = randomize(TransfoXLLMHeadModel(hf_config))
    params = jax.tree.map(jnp.asarray, from_hf_state_dict(state_of(hf), config))
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, shapes(
        TransformerXL(config), jnp.zeros((1, 1), jnp.int32), Memory.empty(config, 1)))

    rng = np.random.default_rng(0)
    segments = [rng.integers(0, config.vocab_size, size=(3, 4)) for _ in range(3)]
    ours, memory = run_segments(config, params, segments)

    mems = [torch.zeros(0, 3, config.d_model) for _ in range(config.n_layer)] if config.mem_len else None
    with torch.no_grad():
        for tokens, our_log_probs in zip(segments, ours):
            out = hf(input_ids=torch.from_numpy(tokens), mems=mems)
            mems = out.mems
            np.testing.assert_allclose(our_log_probs, out.prediction_scores.numpy(), atol=2e-5)
    if config.mem_len:
        hf_memory = np.stack([m.numpy().transpose(1, 0, 2) for m in mems])
        np.testing.assert_allclose(np.asarray(memory.hidden), hf_memory, atol=2e-5)
        assert np.asarray(memory.valid).all()


def test_parameter_count_matches_official_code():
    """The small benchmark model: 5,987,600 parameters when the official PyTorch code builds it
    (../shared/reference/transformer_xl.md section 4.3)."""
    config = TransformerXLConfig(vocab_size=10_000, n_layer=4, d_model=256, n_head=8, d_head=32, d_inner=1024)
    shapes = jax.eval_shape(lambda: TransformerXL(config).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32), Memory.empty(config, 1)))
    assert sum(x.size for x in jax.tree.leaves(nn.meta.unbox(shapes))) == 5_987_600


def test_rel_shift_picks_distance_mlen_plus_i_minus_j():
    """Score [i, k] against distance (k_len-1-k), down to -1 (the row the layer adds to the causal
    distances); after the shift, entry [i, j] must hold the score for distance mlen + i - j at every
    causal (visible) position."""
    q_len, mem_len = 5, 7
    k_len = q_len + mem_len
    query = np.arange(q_len)[:, None]
    distance_of_column = (k_len - 1 - np.arange(k_len + 1))[None, :]
    raw = 1000 * query + distance_of_column  # encodes (query, distance) in each entry
    shifted = np.asarray(rel_shift(jnp.asarray(raw, jnp.float32)[None, None], k_len))[0, 0]
    for i in range(q_len):
        for j in range(mem_len + i + 1):
            assert shifted[i, j] == 1000 * i + (mem_len + i - j), (i, j)


def test_bidirectional_rel_shift_covers_every_key():
    """With distances k_len-1 down to -(q_len-1) (relative_distances, causal=False), every entry
    [i, j] of the shifted scores is the score for distance mem_len + i - j, negative ones included."""
    q_len, mem_len = 5, 3
    k_len = q_len + mem_len
    distances = np.asarray(relative_distances(k_len, q_len, causal=False, clamp_len=-1))
    assert distances.tolist() == list(range(k_len - 1, -q_len, -1))
    raw = 1000 * np.arange(q_len)[:, None] + distances[None, :]
    shifted = np.asarray(rel_shift(jnp.asarray(raw, jnp.float32)[None, None], k_len))[0, 0]
    expected = 1000 * np.arange(q_len)[:, None] + mem_len + np.arange(q_len)[:, None] - np.arange(k_len)[None, :]
    np.testing.assert_array_equal(shifted, expected)


@pytest.mark.parametrize("r_len", [13, 16])
def test_rel_shift_gradient_is_that_of_its_gather(r_len):
    """rel_shift's own backward (concatenation) against autodiff of the same read written as a
    gather of the flattened scores at i * (R - 1) + j + Q - 1: causal (R = K + 1) and bidirectional
    (R = K + Q - 1) lengths, random cotangents."""
    q_len, k_len = 5, 12
    rng = np.random.default_rng(0)
    scores = jnp.asarray(rng.normal(size=(2, 3, q_len, r_len)), jnp.float32)
    cotangent = jnp.asarray(rng.normal(size=(2, 3, q_len, k_len)), jnp.float32)
    index = np.arange(q_len)[:, None] * (r_len - 1) + np.arange(k_len)[None, :] + q_len - 1

    def gathered(scores):
        return scores.reshape(2, 3, -1)[:, :, index]

    out, vjp = jax.vjp(lambda s: rel_shift(s, k_len), scores)
    expected_out, expected_vjp = jax.vjp(gathered, scores)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(vjp(cotangent)[0], expected_vjp(cotangent)[0])


def test_same_length_mask_sees_exactly_mem_len_keys():
    """Visible keys per query with q_len 4, mem_len 6 (reference section 1.4, PyTorch column):
    a full memory gives 6 for every query; 3 filled slots give [4, 5, 6, 6]."""
    segment = jnp.ones((1, 4), bool)
    full = attention_mask(jnp.ones((1, 6), bool), segment, causal=True, same_length=True)
    assert np.asarray(full.sum(-1)).ravel().tolist() == [6, 6, 6, 6]
    half = attention_mask(jnp.asarray([[False] * 3 + [True] * 3]), segment, causal=True, same_length=True)
    assert np.asarray(half.sum(-1)).ravel().tolist() == [4, 5, 6, 6]
    causal = attention_mask(jnp.ones((1, 6), bool), segment, causal=True, same_length=False)
    assert np.asarray(causal.sum(-1)).ravel().tolist() == [7, 8, 9, 10]
    padded = attention_mask(jnp.ones((1, 0), bool), jnp.asarray([[True, True, True, False]]),
                            causal=False, same_length=False)
    assert np.asarray(padded[0]).tolist() == [[True, True, True, False]] * 4


@pytest.mark.parametrize("untie_r", [False, True])
def test_recurrence_equals_one_long_call(untie_r):
    """With no dropout and mem_len >= the segment length, the logits of segment 2 computed with the
    memory from segment 1 equal those of the same positions when both segments go in one call."""
    seg = 8
    config = dataclasses.replace(SMALL, mem_len=seg, n_layer=3, untie_r=untie_r)
    model = TransformerXL(config)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 2 * seg), 0, config.vocab_size)
    params = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), tokens[:, :seg], Memory.empty(config, 2))["params"])

    @functools.partial(jax.jit, static_argnums=0)
    def logits(cfg, tokens, memory):
        m = TransformerXL(cfg)
        hidden, memory = m.apply({"params": params}, tokens, memory)
        return m.apply({"params": params}, hidden, method=TransformerXL.logits), memory

    _, memory = logits(config, tokens[:, :seg], Memory.empty(config, 2))
    second, _ = logits(config, tokens[:, seg:], memory)
    no_memory = dataclasses.replace(config, mem_len=0)
    both, _ = logits(no_memory, tokens, Memory.empty(no_memory, 2))
    assert np.max(np.abs(np.asarray(second) - np.asarray(both[:, seg:]))) < 1e-5


@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 128, 129), (4, 1, 6, 5)])
def test_random_words_are_jax_random_bits_in_one_pass(shape):
    """The written-out hash gives jax.random.bits's words bit for bit, for typed and raw keys, eager
    and jitted; jitted, XLA computes it without the loop that jax.random.bits lowers to on a CPU."""
    for key in (jax.random.key(0), jax.random.PRNGKey(7), jax.random.split(jax.random.key(3))[1]):
        expected = np.asarray(jax.random.bits(key, shape, jnp.uint32))
        np.testing.assert_array_equal(random_words(key, shape), expected)
        np.testing.assert_array_equal(jax.jit(random_words, static_argnums=1)(key, shape), expected)
    assert " while(" not in jax.jit(random_words, static_argnums=1).lower(jax.random.key(0), shape).compile().as_text()


@pytest.mark.parametrize("bits", [16, 32])
def test_dropout_keeps_each_element_independently_with_its_stated_probability(bits):
    """The masks of 2 x 128 x 257 elements (an odd last axis, so the last word is cut short): the
    kept fraction, and the fraction of pairs kept together that come from the two halves of one
    word (elements j and j + 129 of a row) and from neighbours, against keep and keep^2, each within
    5 standard errors; the output's values are 0 and 1 / keep, their mean the input's."""
    shape = (2, 128, 257)
    kept, keep = keep_mask(jax.random.key(0), 0.9, shape, bits)
    kept = np.asarray(kept)
    assert kept.shape == shape and keep == (round(0.9 * 65536) / 65536 if bits == 16 else 0.9)
    n = kept.size
    assert abs(kept.mean() - keep) < 5 * np.sqrt(keep * (1 - keep) / n)
    stride = -(-shape[-1] // 2)  # with 16 bits, element j's word gives element j + 129 its mask too
    for a, b in ((kept[..., :-1], kept[..., 1:]), (kept[..., :shape[-1] - stride], kept[..., stride:])):
        both = (a & b).mean()
        assert abs(both - keep ** 2) < 5 * np.sqrt(keep ** 2 * (1 - keep ** 2) / a.size), both
    x = jnp.ones(shape)
    out = Dropout(0.1, bits).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    np.testing.assert_allclose(np.unique(np.asarray(out)), [0.0, 1 / keep], rtol=1e-6)
    assert abs(float(out.mean()) - 1.0) < 5 * np.sqrt((1 / keep - 1) / n)


def test_dropout_gradient_is_the_mask_over_keep_and_deterministic_is_the_identity():
    x = jax.random.normal(jax.random.key(2), (4, 33))
    rngs = {"dropout": jax.random.key(3)}
    grad = jax.grad(lambda x: Dropout(0.3).apply({}, x, deterministic=False, rngs=rngs).sum())(x)
    out = Dropout(0.3).apply({}, x, deterministic=False, rngs=rngs)
    np.testing.assert_allclose(grad, np.where(np.asarray(out) != 0, 1 / (round(0.7 * 65536) / 65536), 0), rtol=1e-6)
    assert (Dropout(0.3).apply({}, x, deterministic=True) == x).all()
    assert (Dropout(0.0).apply({}, x, deterministic=False, rngs=rngs) == x).all()


def test_dropout_with_32_bits_is_flax_dropout():
    x = jax.random.normal(jax.random.key(4), (3, 5, 40))
    rngs = {"dropout": jax.random.key(5)}
    ours = Dropout(0.2, bits=32).apply({}, x, deterministic=False, rngs=rngs)
    flax_dropout = nn.Dropout(0.2).apply({}, x, deterministic=False, rngs=rngs)
    assert (ours == flax_dropout).all() and (ours == 0).any()
