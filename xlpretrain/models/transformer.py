"""The Transformer-XL backbone (Dai et al. 2019): token embedding -> N relative-attention layers ->
hidden states, with segment-level recurrence memory in and out.

Follows the official PyTorch code (kimiyoung/transformer-xl, `pytorch/mem_transformer.py`):
post-LayerNorm by default, ReLU feed-forward, dropout on the embeddings, on the position embeddings
and on the output, `r_w_bias`/`r_r_bias` shared across layers unless `untie_r`, weights N(0, 0.02)
and LayerNorm scales N(1, 0.02). The memory of a layer is its input over the last `mem_len`
positions, kept without gradient.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from xlpretrain.models.attention import RelativeAttention
from xlpretrain.models.positions import relative_distances, sinusoid
from xlpretrain.models.softmax import TiedSoftmax


@dataclasses.dataclass(frozen=True)
class TransformerXLConfig:
    vocab_size: int
    n_layer: int
    d_model: int
    n_head: int
    d_head: int
    d_inner: int
    dropout: float = 0.1
    dropatt: float = 0.0
    mem_len: int = 0           # memory slots per layer; 0 turns recurrence off
    clamp_len: int = -1        # distances beyond this share one embedding; -1: no clamping
    same_length: bool = False  # every query attends to exactly mem_len keys (used at evaluation)
    pre_lnorm: bool = False
    untie_r: bool = False      # one r_w_bias/r_r_bias per layer instead of one shared pair
    init_std: float = 0.02


@flax.struct.dataclass
class Memory:
    """Segment-level recurrence state.

    hidden: [n_layer, batch, mem_len, d_model], the inputs of each layer at the last mem_len positions.
    valid:  [batch, mem_len], True for filled slots. Filled slots are always the most recent ones,
            so a memory with no valid slot behaves exactly like the official code's empty start.
    """

    hidden: jax.Array
    valid: jax.Array

    @classmethod
    def empty(cls, config: TransformerXLConfig, batch_size: int) -> Memory:
        return cls(hidden=jnp.zeros((config.n_layer, batch_size, config.mem_len, config.d_model), jnp.float32),
                   valid=jnp.zeros((batch_size, config.mem_len), bool))

    def reset(self, rows: jax.Array) -> Memory:
        """Empties the memory of the rows where `rows` [batch] is True."""
        return self.replace(valid=self.valid & ~rows[:, None])

    def push(self, states: jax.Array) -> Memory:
        """Appends `states` [n_layer, batch, q_len, d_model] and keeps the last mem_len slots (FIFO)."""
        mem_len = self.valid.shape[1]
        hidden = jnp.concatenate([self.hidden, jax.lax.stop_gradient(states)], axis=2)
        valid = jnp.concatenate([self.valid, jnp.ones(states.shape[1:3], bool)], axis=1)
        return Memory(hidden=hidden[:, :, hidden.shape[2] - mem_len:], valid=valid[:, valid.shape[1] - mem_len:])


MEMORY_AXES = Memory(hidden=("layers", "batch", "memory", "embed"), valid=("batch", "memory"))


def attention_mask(memory_valid: jax.Array, q_len: int, same_length: bool) -> jax.Array:
    """[batch, mem_len] valid memory slots -> [batch, q_len, k_len] visible keys per query.

    Query i sees key j of `[memory; segment]` at distance d = mem_len + i - j when d >= 0 (causal)
    and the slot is filled; with `same_length` also only when d < mem_len, which is the official
    code's same-length mask: every query sees exactly mem_len keys, itself included, once the
    memory is full.
    """
    batch, mem_len = memory_valid.shape
    distance = mem_len + jnp.arange(q_len)[:, None] - jnp.arange(mem_len + q_len)[None, :]
    visible = distance >= 0
    if same_length:
        visible &= distance < mem_len
    key_valid = jnp.concatenate([memory_valid, jnp.ones((batch, q_len), bool)], axis=1)
    return visible[None] & key_valid[:, None, :]


def _normal_around_one(std: float):
    def init(key, shape, dtype=jnp.float32):
        return 1.0 + std * jax.random.normal(key, shape, dtype)
    return init


def layer_norm(init_std: float, name: str) -> nn.LayerNorm:
    """PyTorch's LayerNorm (eps 1e-5) with the official init: scale N(1, init_std), bias 0."""
    return nn.LayerNorm(
        epsilon=1e-5,
        scale_init=nn.with_logical_partitioning(_normal_around_one(init_std), ("embed",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)), name=name)


class FeedForward(nn.Module):
    """Linear(d_model, d_inner) -> ReLU -> dropout -> Linear(d_inner, d_model) -> dropout."""

    d_inner: int
    dropout: float
    init_std: float

    @nn.compact
    def __call__(self, x, deterministic: bool):
        init = nn.initializers.normal(self.init_std)
        zeros = nn.initializers.zeros
        h = nn.Dense(self.d_inner, kernel_init=nn.with_logical_partitioning(init, ("embed", "mlp")),
                     bias_init=nn.with_logical_partitioning(zeros, ("mlp",)), name="inner")(x)
        h = nn.with_logical_constraint(nn.relu(h), ("batch", "length", "mlp"))
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        h = nn.Dense(x.shape[-1], kernel_init=nn.with_logical_partitioning(init, ("mlp", "embed")),
                     bias_init=nn.with_logical_partitioning(zeros, ("embed",)), name="outer")(h)
        return nn.Dropout(self.dropout)(h, deterministic=deterministic)


class DecoderLayer(nn.Module):
    """Relative attention then feed-forward, each with a residual and a LayerNorm."""

    config: TransformerXLConfig

    @nn.compact
    def __call__(self, h, memory, pos_emb, r_w_bias, r_r_bias, visible, deterministic: bool):
        c = self.config
        attention = RelativeAttention(c.n_head, c.d_head, c.dropatt, c.init_std, name="attn")
        feed_forward = FeedForward(c.d_inner, c.dropout, c.init_std, name="ff")
        norm_attn = layer_norm(c.init_std, "norm_attn")
        norm_ff = layer_norm(c.init_std, "norm_ff")
        drop = nn.Dropout(c.dropout)

        def attend(x, mem):
            return drop(attention(x, mem, pos_emb, r_w_bias, r_r_bias, visible, deterministic),
                        deterministic=deterministic)

        if c.pre_lnorm:
            h = h + attend(norm_attn(h), norm_attn(memory))
            h = h + feed_forward(norm_ff(h), deterministic)
        else:
            h = norm_attn(h + attend(h, memory))
            h = norm_ff(h + feed_forward(h, deterministic))
        return nn.with_logical_constraint(h, ("batch", "length", "embed"))


class TransformerXL(nn.Module):
    """Tokens [batch, q_len] + Memory -> hidden states [batch, q_len, d_model] + the next Memory."""

    config: TransformerXLConfig

    def setup(self):
        c = self.config
        self.vocab = TiedSoftmax(c.vocab_size, c.d_model, c.init_std)
        shape, axes = ((c.n_layer, c.n_head, c.d_head), ("layers", "heads", "head_dim")) if c.untie_r \
            else ((c.n_head, c.d_head), ("heads", "head_dim"))
        bias_init = nn.with_logical_partitioning(nn.initializers.normal(c.init_std), axes)
        self.r_w_bias = self.param("r_w_bias", bias_init, shape)
        self.r_r_bias = self.param("r_r_bias", bias_init, shape)
        self.layers = [DecoderLayer(c, name=f"layer_{i}") for i in range(c.n_layer)]
        self.drop = nn.Dropout(c.dropout)

    def __call__(self, tokens, memory: Memory, deterministic: bool = True):
        c = self.config
        q_len = tokens.shape[1]
        k_len = memory.valid.shape[1] + q_len
        h = self.drop(self.vocab.embed(tokens), deterministic=deterministic)
        h = nn.with_logical_constraint(h, ("batch", "length", "embed"))
        pos_emb = self.drop(sinusoid(relative_distances(k_len, c.clamp_len), c.d_model), deterministic=deterministic)
        visible = attention_mask(memory.valid, q_len, c.same_length)

        layer_inputs = []
        for i, layer in enumerate(self.layers):
            layer_inputs.append(h)
            r_w_bias, r_r_bias = (self.r_w_bias[i], self.r_r_bias[i]) if c.untie_r else (self.r_w_bias, self.r_r_bias)
            h = layer(h, memory.hidden[i], pos_emb, r_w_bias, r_r_bias, visible, deterministic)
        h = self.drop(h, deterministic=deterministic)
        return h, memory.push(jnp.stack(layer_inputs))

    def nll(self, hidden, targets):
        """[batch, length, d_model] hidden states, [batch, length] targets -> NLL in nats [batch, length]."""
        return self.vocab.nll(hidden, targets)

    def logits(self, hidden):
        return self.vocab.logits(hidden)
