"""Multi-head attention of the backbone: Transformer-XL's relative form (Dai et al. 2019, section 3.3
and appendix B) and the plain form of BERT, whose positions are added to the input instead.

For a query at position i of the segment and a key at position j of `[memory; segment]`, at
distance d = M + i - j (M memory slots), the relative score is

    A[i, j] = ((W_q h_i + u) . W_kE x_j  +  (W_q h_i + v) . W_kR R_d) / sqrt(d_head)
               `----- content (a)+(c) ---'  `------ position (b)+(d) -----'

with u = `r_w_bias`, v = `r_r_bias` and R the sinusoid of `positions.py`. The position term is one
matmul against the distance embeddings followed by `rel_shift`, instead of Q*K embeddings.
Without relative positions the score is the content term alone, W_q h_i . W_k x_j / sqrt(d_head),
which `jax.nn.dot_product_attention` can compute instead (`kernel`: its XLA form, or cuDNN's fused
flash attention on NVIDIA GPUs, which holds no [heads, q_len, k_len] scores in memory; the padding
mask still becomes one [batch, 1, q_len, k_len] bias).

XLNet (Yang et al. 2019, section 2.5 and appendix A.2) adds a relative segment term

    + (W_q h_i + b) . s_ij / sqrt(d_head),   s_ij = seg[0] if i, j are in one segment else seg[1]

(b = `r_s_bias`, memory counted as segment 0), and the query stream g of two-stream attention:
queries from g, keys and values from the content stream `[memory; h]`, every weight shared.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from xlpretrain.models.dropout import Dropout
from xlpretrain.models.precision import einsum_float32

# Masked scores become this (added to a score, it rounds to itself) rather than -inf, so that a row
# with no visible key (padding) gives a uniform distribution instead of NaN.
MASKED = -1e30


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def rel_shift(scores: jnp.ndarray, k_len: int) -> jnp.ndarray:
    """[..., Q, R] scores against descending distances (K-1, K-2, ...) -> [..., Q, K] against keys, R > K.

    out[..., i, j] = scores[..., i, j + Q - 1 - i], the entry for distance d = (K - Q) + i - j: the
    flattened scores read from position Q - 1 on with a row stride of R - 1. With R = K + 1 (causal
    distances K-1 ... 0 and one more, -1) that is one contiguous slice, and the entries right of the
    diagonal are junk from the next row that the causal mask hides, as in the official `_rel_shift`;
    with R = K + Q - 1 (distances down to -(Q-1)) every entry is valid.
    """
    *lead, q, r = scores.shape
    if r <= k_len:
        raise ValueError(f"rel_shift needs more distances than keys, got {r} for {k_len} keys")
    folded = scores.reshape(*lead, q * r)[..., q - 1:q - 1 + q * (r - 1)].reshape(*lead, q, r - 1)
    return folded[..., :k_len]


def _rel_shift_forward(scores, k_len):
    return rel_shift(scores, k_len), scores.shape


def _rel_shift_backward(k_len, shape, grad):
    """The gradient put back where the forward read it, by concatenation with zeros. Autodiff would
    pad instead, and XLA's CPU backend runs that pad as a loop over every element: 6 ms a layer at
    the small benchmark model's shapes, where the concatenation copies whole blocks in under 1."""
    *lead, q, r = shape
    zeros = functools.partial(jnp.zeros, dtype=grad.dtype)
    if r - 1 > k_len:
        grad = jnp.concatenate([grad, zeros((*lead, q, r - 1 - k_len))], axis=-1)
    flat = grad.reshape(*lead, q * (r - 1))
    return jnp.concatenate([zeros((*lead, q - 1)), flat, zeros((*lead, 1))], axis=-1).reshape(shape),


rel_shift.defvjp(_rel_shift_forward, _rel_shift_backward)


@flax.struct.dataclass
class RelativeTerms:
    """What the relative score needs beyond the layer's weights.

    pos_emb:       [directions, r_len, d_model] embeddings of `positions.relative_distances`; with
                   2 directions (XLNet's bi_data) the second half of the batch uses the second.
    r_w_bias, r_r_bias, r_s_bias: [n_head, d_head] the content, position and segment biases.
    other_segment: [batch, q_len, k_len] True where query and key are in different segments;
                   None: no segment term.
    """

    pos_emb: jax.Array
    r_w_bias: jax.Array
    r_r_bias: jax.Array
    r_s_bias: jax.Array | None = None
    other_segment: jax.Array | None = None


class Attention(nn.Module):
    """Multi-head attention of a segment over `[memory; segment]`, optionally with XLNet's query stream.

    Returns the output projections (before dropout and the residual) of the content stream,
    [batch, q_len, d_model], and of the query stream, [batch, n_predict, d_model] (None without one).
    `relative`: Transformer-XL's position term (needs RelativeTerms); `segments`: XLNet's segment
    term (its `seg` embedding); `use_bias`: biases on the q, k, v and output projections (BERT);
    `kernel`: "einsum", or "xla" / "cudnn", the `implementation` of `jax.nn.dot_product_attention`,
    which has no relative term, no memory, no query stream and no attention dropout.
    """

    n_head: int
    d_head: int
    dropatt: float
    init_std: float
    relative: bool = True
    segments: bool = False
    use_bias: bool = False
    kernel: str = "einsum"
    dropout_bits: int = 16

    def _bias(self, name, shape, axes):
        init = nn.with_logical_partitioning(nn.initializers.zeros, axes)
        return self.param(name, init, shape) if self.use_bias else jnp.zeros(shape)

    @nn.compact
    def __call__(self, h, memory, visible, deterministic: bool, relative: RelativeTerms | None = None,
                 g=None, target_mapping=None, g_visible=None):
        """
        h:        [batch, q_len, d_model] the segment's layer input (content stream).
        memory:   [batch, mem_len, d_model] the cached inputs of this layer (no gradient).
        visible:  [batch or 1, q_len, k_len] True where query i may attend to key j, k_len = mem_len + q_len.
        g:        [batch, n_predict, d_model] the query stream at the prediction targets, which
                  `target_mapping` [batch, n_predict, q_len] (one-hot rows) places in the segment;
                  its queries see the keys of `g_visible` [batch, q_len, k_len].
        """
        d_model = h.shape[-1]
        init = nn.initializers.normal(self.init_std)
        w_q = self.param("q", nn.with_logical_partitioning(init, ("embed", "heads", "head_dim")),
                         (d_model, self.n_head, self.d_head))
        w_kv = self.param("kv", nn.with_logical_partitioning(init, ("embed", "kv", "heads", "head_dim")),
                          (d_model, 2, self.n_head, self.d_head))
        w_o = self.param("o", nn.with_logical_partitioning(init, ("heads", "head_dim", "embed")),
                         (self.n_head, self.d_head, d_model))
        b_q = self._bias("q_bias", (self.n_head, self.d_head), ("heads", "head_dim"))
        b_kv = self._bias("kv_bias", (2, self.n_head, self.d_head), ("kv", "heads", "head_dim"))
        b_o = self._bias("o_bias", (d_model,), ("embed",))
        if self.relative:
            w_r = self.param("r", nn.with_logical_partitioning(init, ("embed", "heads", "head_dim")),
                             (d_model, self.n_head, self.d_head))
        if self.segments:
            seg = self.param("seg", nn.with_logical_partitioning(init, ("kv", "heads", "head_dim")),
                             (2, self.n_head, self.d_head))
        dropout = Dropout(self.dropatt, self.dropout_bits)
        # The matmuls run in the dtype of the input (bfloat16 under model.dtype="bfloat16"), the
        # softmax's maximum, sums and normalisation in float32.
        dtype = h.dtype
        w_q, w_kv, w_o, b_q, b_kv, b_o = (x.astype(dtype) for x in (w_q, w_kv, w_o, b_q, b_kv, b_o))
        if self.relative:
            w_r = w_r.astype(dtype)
            relative = jax.tree.map(lambda x: x.astype(dtype) if x.dtype != bool else x, relative)
        if self.segments:
            seg = seg.astype(dtype)

        if self.kernel != "einsum":
            if self.relative or self.segments or memory.shape[1] or g is not None or (self.dropatt and not deterministic):
                raise ValueError(f"kernel {self.kernel!r} has no relative or segment term, memory, query stream "
                                 f"or attention dropout")
            # [batch, length, heads, head_dim], the layout jax.nn.dot_product_attention takes.
            q = jnp.einsum("bqd,dhe->bqhe", h, w_q) + b_q
            k, v = jnp.einsum("bkd,dthe->tbkhe", h, w_kv) + b_kv[:, None, None]
            attended = jax.nn.dot_product_attention(q, k, v, mask=visible[:, None], implementation=self.kernel)
            out = jnp.einsum("bqhe,hed->bqd", attended, w_o) + b_o
            return nn.with_logical_constraint(out, ("batch", "length", "embed")), None

        # Head-major layouts keep the score matmuls free of transposes: queries [heads, batch,
        # q_len, head_dim], keys and values [heads, batch, head_dim, k_len], whose gradients, products
        # over the queries, then read both operands along q_len (on 2 CPU cores 2.5 times as fast as
        # with [..., k_len, head_dim]: benchmarks/RESULTS.md). Queries come from the segment only;
        # keys and values from [memory; segment].
        # The score scale 1/sqrt(d_head) is applied to the queries (and biases) rather than to the
        # [q_len, k_len] scores: the same product, one pass fewer over the largest tensor.
        scale = 1.0 / math.sqrt(self.d_head)

        def queries(x):
            return jnp.einsum("bqd,dhe->hbqe", x, w_q * scale) + scale * b_q[:, None, None]

        k, v = jnp.einsum("bkd,dthe->thbek", h, w_kv) + b_kv[:, :, None, :, None]
        if memory.shape[1]:  # separately, so that no gradient is formed for the memory
            mem_k, mem_v = jnp.einsum("bmd,dthe->thbem", memory, w_kv) + b_kv[:, :, None, :, None]
            k, v = jnp.concatenate([mem_k, k], axis=3), jnp.concatenate([mem_v, v], axis=3)
        k_len = k.shape[3]
        if self.relative:
            r = jnp.einsum("nkd,dhe->hnke", relative.pos_emb, w_r)
            # Causal distances: a zero row for distance -1 (see rel_shift), added here rather than
            # to relative_distances so that the embeddings' dropout masks stay what they were.
            if r.shape[2] == k_len:
                r = jnp.pad(r, ((0, 0), (0, 0), (0, 1), (0, 0)))

        def attend(q, visible):
            """[heads, batch, q_len, head_dim] scaled queries -> attended values, same shape."""
            if not self.relative:
                scores = jnp.einsum("hbqe,hbek->hbqk", q, k)
            else:
                scores = jnp.einsum("hbqe,hbek->hbqk", q + scale * relative.r_w_bias[:, None, None], k)
                # The position term does not depend on the batch: one matmul over all (batch, query)
                # rows of a direction.
                n_head, batch, q_len, _ = q.shape
                directions = r.shape[1]
                rows = (q + scale * relative.r_r_bias[:, None, None]).reshape(
                    n_head, directions, batch // directions * q_len, self.d_head)
                position = jnp.einsum("hnme,hnke->hnmk", rows, r).reshape(n_head, batch, q_len, -1)
                scores = scores + rel_shift(position, k_len)
                if relative.other_segment is not None:
                    same, other = jnp.einsum("hbqe,she->shbq", q + scale * relative.r_s_bias[:, None, None], seg)
                    scores = scores + jnp.where(relative.other_segment[None], other[..., None], same[..., None])
            # Adding the mask (0 or MASKED, which absorbs any score) rather than selecting keeps
            # nothing of the scores for the backward pass.
            scores = scores.astype(jnp.float32) + jnp.where(visible, 0.0, MASKED)
            # Softmax with the normalisation deferred to the output: dividing the [q_len, d_head]
            # result by the row sums equals dividing the [q_len, k_len] weights, and is a pass over a
            # tensor k_len/d_head times smaller. Dropout on the weights commutes with the row scaling.
            # The exponentials are taken (and kept for the backward pass) in the compute dtype, their
            # sums and the normalisation done in float32.
            weights = jnp.exp((scores - jax.lax.stop_gradient(scores).max(axis=-1, keepdims=True)).astype(dtype))
            row_sums = jnp.sum(weights, axis=-1, keepdims=True, dtype=jnp.float32)
            weights = dropout(weights, deterministic=deterministic)
            attended = einsum_float32("hbqk,hbek->hbqe", weights, v)
            return (attended / row_sums).astype(dtype)

        def output(attended, axes):
            out = jnp.einsum("hbqe,hed->bqd", attended, w_o) + b_o
            return nn.with_logical_constraint(out, axes)

        out_h = output(attend(queries(h), visible), ("batch", "length", "embed"))
        if g is None:
            return out_h, None
        # The query stream attends at the target positions: its queries are scattered into the
        # segment by the one-hot target_mapping, and the attended values gathered back, so the
        # relative and segment terms see each target at its own position.
        q_g = jnp.einsum("hbpe,bpq->hbqe", queries(g), target_mapping)
        attended_g = jnp.einsum("hbqe,bpq->hbpe", attend(q_g, g_visible), target_mapping)
        return out_h, output(attended_g, ("batch", "targets", "embed"))
