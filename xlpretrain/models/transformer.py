"""The backbone: token embedding -> N attention layers -> hidden states, with segment-level
recurrence memory in and out. By default it is the Transformer-XL of Dai et al. (2019); a few config
fields turn it into the bidirectional encoder of BERT and ELECTRA.

Transformer-XL follows the official PyTorch code (kimiyoung/transformer-xl,
`pytorch/mem_transformer.py`): embeddings scaled by sqrt(d_model), relative positions, post-LayerNorm
(eps 1e-5) by default, ReLU feed-forward with dropout after the activation, dropout on the
embeddings, on the position embeddings and on the output, `r_w_bias`/`r_r_bias` shared across
layers unless `untie_r`, weights N(0, 0.02) and LayerNorm scales N(1, 0.02). The memory of a layer
is its input over the last `mem_len` positions, kept without gradient.

`flavor="bert"` gives the block of BERT's and ELECTRA's code (HuggingFace `BertModel`,
`ElectraModel`): unscaled token embeddings plus learned absolute positions and token types, then a
LayerNorm; biases on the q, k, v and output projections; no dropout after the feed-forward
activation nor on the output; LayerNorm scales initialised to 1. Combine it with `causal=False`,
`positions="absolute"`, `n_token_types=2`, `activation="gelu"` and `layer_norm_eps=1e-12`.

`flavor="xlnet"` is XLNet's (zihangdai/xlnet `modeling.py`, HuggingFace `XLNetModel`): the
Transformer-XL block with unscaled token embeddings, LayerNorm scales initialised to 1, a relative
segment term in the attention (`seg` per layer, `r_s_bias`) and the two-stream attention of the
permutation objective: given a `Permutation`, a query stream g starts from the learned `mask_emb`
at the target positions and the output is g there. Combine it with `causal=False`,
`activation="gelu_tanh"`, `layer_norm_eps=1e-12`, `untie_r=True`, and for pretraining `reuse_len`
(only the first reuse_len positions of a segment are cached) and `bi_data`.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from xlpretrain.models.attention import Attention, RelativeTerms
from xlpretrain.models.dropout import Dropout
from xlpretrain.models.positions import relative_distances, sinusoid
from xlpretrain.models.softmax import AdaptiveSoftmax

FLAVORS = ("transformer_xl", "bert", "xlnet")
# What each layer keeps from the forward pass for the backward pass (`remat`): everything ("none"),
# only its inputs, recomputing the rest ("full"), or what a jax.checkpoint_policies policy saves.
REMAT = {"none": None, "full": jax.checkpoint_policies.nothing_saveable,
         "dots_saveable": jax.checkpoint_policies.dots_saveable,
         "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}
POSITIONS = ("relative", "absolute")
ATTENTION_KERNELS = ("einsum", "xla", "cudnn")  # Attention.kernel
ACTIVATIONS = {
    "relu": nn.relu,
    "gelu": functools.partial(nn.gelu, approximate=False),  # erf: BERT's and ELECTRA's released weights
    "gelu_tanh": functools.partial(nn.gelu, approximate=True),  # HuggingFace "gelu_new"
}


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
    dropout_bits: int = 16     # random bits per dropout mask element: 16 or 32 (models/dropout.py)
    mem_len: int = 0           # memory slots per layer; 0 turns recurrence off
    clamp_len: int = -1        # distances beyond this share one embedding; -1: no clamping
    same_length: bool = False  # every query attends to exactly mem_len keys (used at evaluation)
    pre_lnorm: bool = False
    untie_r: bool = False      # one r_w_bias/r_r_bias per layer instead of one shared pair
    init_std: float = 0.02
    causal: bool = True        # False: every token sees the whole segment (BERT, ELECTRA)
    positions: str = "relative"  # or "absolute": a learned table of max_positions added to the input
    max_positions: int = 512
    n_token_types: int = 0     # segment (token-type) embeddings; BERT: 2
    d_embed: int = 0           # embedding size; 0: d_model; else projected to d_model (ELECTRA-Small: 128)
    # Transformer-XL's adaptive input and softmax (models/softmax.py): vocabulary bins cut at
    # `cutoffs`, bin i of width d_embed // div_val**i, tie_projs[i] ties bin i's output projection
    # to its input one; proj_same_dim=False (the TF code's lm1b) drops projections between equal widths.
    cutoffs: tuple = ()
    div_val: int = 1
    tie_projs: tuple = ()
    proj_same_dim: bool = True
    proj_init_std: float = 0.01
    tail_capacity: tuple = ()  # per tail bin: the share of a batch's tokens whose bin logits the loss computes
    activation: str = "relu"   # feed-forward: relu, gelu (erf) or gelu_tanh
    layer_norm_eps: float = 1e-5
    flavor: str = "transformer_xl"  # or "bert", "xlnet": the block details of the original code (module docstring)
    reuse_len: int = 0         # positions of a segment cached as memory; 0: all (XLNet: the first half)
    bi_data: bool = False      # the second half of the batch is reversed text: relative distances negated
    remat: str = "none"        # activation recomputation of each layer, a key of REMAT
    dtype: str = "float32"     # computation: "bfloat16" runs the layers' matmuls in bfloat16 (parameters,
    # memory, LayerNorm statistics, softmaxes and the loss stay float32)
    scan_layers: bool = False  # one layer's program run n_layer times (nn.scan): parameters stacked
    # under "layers" with a leading "layers" axis, compile time independent of the depth
    attention_kernel: str = "einsum"  # without a relative term: "xla" or "cudnn" (Attention.kernel)

    @property
    def embed_size(self) -> int:
        return self.d_embed or self.d_model

    @property
    def projects_embeddings(self) -> bool:
        """BERT/ELECTRA's dense `project` from embed_size to d_model after the embedding (Transformer-XL
        projects inside the vocabulary layer instead, without a bias)."""
        return self.flavor != "transformer_xl" and self.embed_size != self.d_model

    @property
    def bert(self) -> bool:
        return self.flavor == "bert"

    @property
    def xlnet(self) -> bool:
        return self.flavor == "xlnet"


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


def attention_mask(memory_valid: jax.Array, input_valid: jax.Array, causal: bool, same_length: bool) -> jax.Array:
    """[batch, mem_len] valid memory slots, [batch, q_len] non-padding inputs -> [batch, q_len, k_len]
    visible keys per query.

    Query i sees key j of `[memory; segment]` at distance d = mem_len + i - j when the key is a
    filled slot or a non-padding token and, if `causal`, d >= 0; with `same_length` also only when
    d < mem_len, which is the official code's same-length mask: every query sees exactly mem_len
    keys, itself included, once the memory is full. Padding queries still see their keys; their
    outputs are left out of every loss.
    """
    mem_len, q_len = memory_valid.shape[1], input_valid.shape[1]
    distance = mem_len + jnp.arange(q_len)[:, None] - jnp.arange(mem_len + q_len)[None, :]
    visible = distance >= 0 if causal else jnp.ones(distance.shape, bool)
    if same_length:
        visible &= distance < mem_len
    key_valid = jnp.concatenate([memory_valid, input_valid], axis=1)
    return visible[None] & key_valid[:, None, :]


def _normal_around_one(std: float):
    def init(key, shape, dtype=jnp.float32):
        return 1.0 + std * jax.random.normal(key, shape, dtype)
    return init


def layer_norm(config: TransformerXLConfig, name: str) -> nn.LayerNorm:
    """LayerNorm with the config's eps; scale initialised N(1, init_std) as the official
    Transformer-XL code, or 1 as BERT and XLNet, whose tiny eps (1e-12) needs the two-pass variance."""
    transformer_xl = config.flavor == "transformer_xl"
    scale_init = _normal_around_one(config.init_std) if transformer_xl else nn.initializers.ones
    return nn.LayerNorm(
        epsilon=config.layer_norm_eps, use_fast_variance=transformer_xl, dtype=jnp.dtype(config.dtype),
        scale_init=nn.with_logical_partitioning(scale_init, ("embed",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)), name=name)


def dense(features: int, init_std: float, axes: tuple[str, str], name: str, dtype: str | None = None) -> nn.Dense:
    """A Dense layer with N(0, init_std) weights, zero bias, and logical axes (in, out), computing
    in `dtype` (default: its input's and parameters' promoted dtype)."""
    return nn.Dense(features, dtype=dtype and jnp.dtype(dtype),
                    kernel_init=nn.with_logical_partitioning(nn.initializers.normal(init_std), axes),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]), name=name)


class FeedForward(nn.Module):
    """Linear(d_model, d_inner) -> activation [-> dropout] -> Linear(d_inner, d_model) -> dropout.
    The dropout after the activation is Transformer-XL's; BERT has none there."""

    config: TransformerXLConfig

    @nn.compact
    def __call__(self, x, deterministic: bool):
        c = self.config
        h = dense(c.d_inner, c.init_std, ("embed", "mlp"), "inner", c.dtype)(x)
        h = nn.with_logical_constraint(ACTIVATIONS[c.activation](h), ("batch", "length", "mlp"))
        if not c.bert:
            h = Dropout(c.dropout, c.dropout_bits)(h, deterministic=deterministic)
        h = dense(x.shape[-1], c.init_std, ("mlp", "embed"), "outer", c.dtype)(h)
        return Dropout(c.dropout, c.dropout_bits)(h, deterministic=deterministic)


class Block(nn.Module):
    """Attention then feed-forward, each with a residual and a LayerNorm, applied to the content
    stream h and, with the same weights, to XLNet's query stream g."""

    config: TransformerXLConfig

    @nn.compact
    def __call__(self, h, memory, visible, deterministic: bool, relative: RelativeTerms | None = None,
                 g=None, target_mapping=None, g_visible=None):
        c = self.config
        attention = Attention(c.n_head, c.d_head, c.dropatt, c.init_std, relative=c.positions == "relative",
                              segments=c.xlnet, use_bias=c.bert, kernel=c.attention_kernel,
                              dropout_bits=c.dropout_bits, name="attn")
        feed_forward = FeedForward(c, name="ff")
        norm_attn = layer_norm(c, "norm_attn")
        norm_ff = layer_norm(c, "norm_ff")
        drop = Dropout(c.dropout, c.dropout_bits)

        def attention_input(x):
            return norm_attn(x) if c.pre_lnorm and x is not None else x

        def residuals(x, attended):
            """x + attention, then x + feed-forward, with the LayerNorms before (pre_lnorm) or after."""
            if c.pre_lnorm:
                x = x + drop(attended, deterministic=deterministic)
                return x + feed_forward(norm_ff(x), deterministic)
            x = norm_attn(x + drop(attended, deterministic=deterministic))
            return norm_ff(x + feed_forward(x, deterministic))

        out_h, out_g = attention(attention_input(h), attention_input(memory), visible, deterministic, relative,
                                 attention_input(g), target_mapping, g_visible)
        h = nn.with_logical_constraint(residuals(h, out_h), ("batch", "length", "embed"))
        if g is not None:
            g = nn.with_logical_constraint(residuals(g, out_g), ("batch", "targets", "embed"))
        return h, g


class Embeddings(nn.Module):
    """Tokens [batch, length] (and token types) -> input vectors [batch, length, d].

    Transformer-XL: the (adaptive) token vector, projected to d = d_model and scaled by sqrt(d_model);
    XLNet: unscaled. d = embed_size for BERT and XLNet. BERT: token + token
    type + absolute position, then a LayerNorm. Dropout follows either. `vocab` also serves the tied output softmax.
    A separate module so that ELECTRA's generator and discriminator can share it.
    """

    config: TransformerXLConfig

    def setup(self):
        c = self.config
        init = nn.initializers.normal(c.init_std)
        txl = c.flavor == "transformer_xl"
        self.vocab = AdaptiveSoftmax(c.vocab_size, c.embed_size, c.d_model if txl else c.embed_size, c.init_std,
                                     scale=txl, cutoffs=tuple(c.cutoffs), div_val=c.div_val,
                                     tie_projs=tuple(c.tie_projs), proj_same_dim=c.proj_same_dim,
                                     proj_init_std=c.proj_init_std, tail_capacity=tuple(c.tail_capacity))
        if c.positions == "absolute":
            self.position = self.param("position", nn.with_logical_partitioning(init, ("positions", "embed")),
                                       (c.max_positions, c.embed_size))
        if c.n_token_types:
            self.token_type = self.param("token_type", nn.with_logical_partitioning(init, ("token_types", "embed")),
                                         (c.n_token_types, c.embed_size))
        if c.bert:
            self.norm = layer_norm(c, "norm")
        self.drop = Dropout(c.dropout, c.dropout_bits)

    def __call__(self, tokens, token_types, deterministic: bool):
        c = self.config
        h = self.vocab.embed(tokens)
        if c.n_token_types:
            h = h + jnp.take(self.token_type, token_types, axis=0)
        if c.positions == "absolute":
            h = h + self.position[:tokens.shape[1]]
        if c.bert:
            h = self.norm(h)
        return nn.with_logical_constraint(self.drop(h, deterministic=deterministic), ("batch", "length", "embed"))


def layer_class(config: TransformerXLConfig):
    """Block, or Block that recomputes its activations in the backward pass under config.remat."""
    return Block if config.remat == "none" else nn.remat(Block, policy=REMAT[config.remat], static_argnums=(4,))


class LayerStep(nn.Module):
    """One layer as a step of `nn.scan` over the layers: carries the streams (h, g), reads the
    layer's memory and, with untie_r, its relative biases, and outputs the layer's input (what the
    memory keeps)."""

    config: TransformerXLConfig

    @nn.compact
    def __call__(self, streams, per_layer, visible, pos_emb, shared_biases, other_segment, target_mapping, g_visible,
                 deterministic: bool):
        h, g = streams
        memory, biases = per_layer
        relative = None if pos_emb is None else RelativeTerms(pos_emb, *(biases or shared_biases), other_segment)
        return layer_class(self.config)(self.config, name="layer")(h, memory, visible, deterministic, relative, g,
                                                                   target_mapping, g_visible), h


@flax.struct.dataclass
class Permutation:
    """XLNet's factorization order, as the two-stream attention reads it.

    can_see:        [batch, q_len, q_len] True where the query stream at i may attend to position j
                    of the segment (XLNet's perm_mask negated); the content stream also sees itself.
    target_mapping: [batch, n_predict, q_len] one-hot rows: the positions whose tokens are predicted.
    """

    can_see: jax.Array
    target_mapping: jax.Array


def _glorot_vector(key, shape, dtype=jnp.float32):
    """TensorFlow's default initializer for XLNet's `mask_emb` [1, 1, d]: uniform with limit
    sqrt(6 / (fan_in + fan_out)), fan_in 1 and fan_out d."""
    limit = (6.0 / (1 + shape[-1])) ** 0.5
    return jax.random.uniform(key, shape, dtype, -limit, limit)


class TransformerXL(nn.Module):
    """Tokens [batch, q_len] + Memory -> hidden states [batch, q_len, d_model] + the next Memory.

    `embeddings`: an `Embeddings` owned by a parent module and shared with another backbone
    (ELECTRA's generator and discriminator); by default the backbone has its own.
    """

    config: TransformerXLConfig
    embeddings: Embeddings | None = None

    def setup(self):
        c = self.config
        self.embed = Embeddings(c) if self.embeddings is None else self.embeddings
        if c.projects_embeddings:  # ELECTRA's embeddings_project, applied after the embedding dropout
            self.project = dense(c.d_model, c.init_std, ("embedding", "embed"), "project", c.dtype)
        if c.positions == "relative":
            shape, axes = ((c.n_layer, c.n_head, c.d_head), ("layers", "heads", "head_dim")) if c.untie_r \
                else ((c.n_head, c.d_head), ("heads", "head_dim"))
            bias_init = nn.with_logical_partitioning(nn.initializers.normal(c.init_std), axes)
            self.r_w_bias = self.param("r_w_bias", bias_init, shape)
            self.r_r_bias = self.param("r_r_bias", bias_init, shape)
            if c.xlnet:
                self.r_s_bias = self.param("r_s_bias", bias_init, shape)
        if c.xlnet:
            self.mask_emb = self.param("mask_emb", nn.with_logical_partitioning(_glorot_vector, (None, None, "embed")),
                                       (1, 1, c.d_model))
        if c.scan_layers:
            self.layers = nn.scan(LayerStep, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                                  in_axes=(0,) + (nn.broadcast,) * 7, length=c.n_layer,
                                  metadata_params={nn.PARTITION_NAME: "layers"})(c, name="layers")
        else:
            self.layers = [layer_class(c)(c, name=f"layer_{i}") for i in range(c.n_layer)]
        self.drop = Dropout(c.dropout, c.dropout_bits)

    def _biases(self) -> tuple:
        """(r_w_bias, r_r_bias, r_s_bias or None): [n_layer, n_head, d_head] each with untie_r."""
        return self.r_w_bias, self.r_r_bias, self.r_s_bias if self.config.xlnet else None

    def _layers(self, h, g, memory: Memory, visible, deterministic: bool, pos_emb, other_segment, target_mapping,
                g_visible):
        """Every layer in turn -> (h, g, the layers' inputs [n_layer, batch, q_len, d_model])."""
        c = self.config
        hidden = memory.hidden.astype(h.dtype)
        if c.scan_layers:
            per_layer = (hidden, self._biases() if c.untie_r and pos_emb is not None else None)
            shared = self._biases() if not c.untie_r and pos_emb is not None else None
            (h, g), inputs = self.layers((h, g), per_layer, visible, pos_emb, shared, other_segment, target_mapping,
                                         g_visible, deterministic)
            return h, g, inputs
        inputs = []
        for i, layer in enumerate(self.layers):
            inputs.append(h)
            relative = None
            if pos_emb is not None:
                pick = (lambda bias: None if bias is None else bias[i]) if c.untie_r else (lambda bias: bias)
                relative = RelativeTerms(pos_emb, *map(pick, self._biases()), other_segment)
            h, g = layer(h, hidden[i], visible, deterministic, relative, g, target_mapping, g_visible)
        return h, g, jnp.stack(inputs)

    def __call__(self, tokens, memory: Memory, token_types=None, input_valid=None, deterministic: bool = True,
                 permutation: Permutation | None = None):
        """token_types: [batch, q_len] segment ids (token-type embeddings with n_token_types; XLNet's
        relative segment term, which is left out when they are not given); input_valid: [batch,
        q_len], False at padding, which no query attends to (default: no padding).
        permutation (XLNet): returns the query stream [batch, n_predict, d_model] at the targets
        instead of the content stream."""
        c = self.config
        batch, q_len = tokens.shape
        mem_len = memory.valid.shape[1]
        other_segment = None
        if c.xlnet and token_types is not None:  # XLNet counts the memory as segment 0
            key_types = jnp.pad(token_types, ((0, 0), (mem_len, 0)))
            other_segment = token_types[:, :, None] != key_types[:, None, :]
        if token_types is None:
            token_types = jnp.zeros(tokens.shape, jnp.int32)
        dtype = jnp.dtype(c.dtype)
        h = self.embed(tokens, token_types, deterministic).astype(dtype)
        if c.projects_embeddings:
            h = self.project(h)
        if input_valid is None:
            input_valid = jnp.ones(tokens.shape, bool)
        visible = attention_mask(memory.valid, input_valid, c.causal, c.same_length)
        g = target_mapping = g_visible = None
        if permutation is not None:
            def over_keys(can_see):  # every valid memory slot is visible to both streams
                return visible & jnp.pad(can_see, ((0, 0), (0, 0), (mem_len, 0)), constant_values=True)

            g_visible = over_keys(permutation.can_see)
            visible = over_keys(permutation.can_see | jnp.eye(q_len, dtype=bool))
            target_mapping = permutation.target_mapping.astype(dtype)
            g = jnp.broadcast_to(self.mask_emb.astype(dtype), (batch, target_mapping.shape[1], c.d_model))
            g = self.drop(g, deterministic=deterministic)
        pos_emb = None
        if c.positions == "relative":
            distances = relative_distances(mem_len + q_len, q_len, c.causal, c.clamp_len)
            directions = (distances, -distances) if c.bi_data else (distances,)
            pos_emb = self.drop(jnp.stack([sinusoid(d, c.d_model) for d in directions]).astype(dtype),
                                deterministic=deterministic)

        h, g, cached = self._layers(h, g, memory, visible, deterministic, pos_emb, other_segment, target_mapping,
                                    g_visible)
        out = h if g is None else g
        if not c.bert:
            out = self.drop(out, deterministic=deterministic)
        if c.reuse_len:
            cached = cached[:, :, :c.reuse_len]
        return out, memory.push(cached)

    def nll(self, hidden, targets):
        """[batch, length, d] hidden states, [batch, length] targets -> NLL in nats [batch, length]
        (d: d_model for Transformer-XL, embed_size for the encoders' heads)."""
        return self.embed.vocab.nll(hidden, targets)

    def logits(self, hidden):
        """[batch, length, d] -> [batch, length, vocab] scores against the tied tables (softmax gives
        the model's distribution)."""
        return self.embed.vocab.logits(hidden)
