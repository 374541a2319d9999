"""The vocabulary layer: the input embedding and the output softmax that shares its tables.

Without cutoffs it is one table [vocab, d_embed] used both ways: `embed` looks tokens up (scaled by
sqrt(d_proj) for Transformer-XL; BERT and XLNet do not scale) and `logits` scores hidden states
against the same table plus an output bias (the official `tie_weight`; BERT's
`cls.predictions.bias`; ELECTRA's generator `output_bias`).

With `cutoffs` it is the adaptive input and adaptive softmax of the official Transformer-XL code
(`AdaptiveEmbedding`, `ProjectedAdaptiveLogSoftmax`; reference section 1.7-1.9). The vocabulary,
sorted by frequency, is cut into bins [0, c1), [c1, c2), ..., [ck, vocab). Bin i has a table of
width d_embed // div_val**i and, where its width differs from d_proj (or always with div_val > 1
and `proj_same_dim`), a projection [d_proj, width]; `tie_projs[i]` makes the output use the input
projection of the bin (div_val 1: the one input projection). The softmax is a head over bin 0's
words and one cluster logit per tail bin; a tail word's log-probability is its cluster's
log-probability plus its log-softmax within the bin. Tail bin i (1-based) uses cluster row i - 1,
as the TensorFlow code (`cutoff_ends[1] + i - 1`) and HuggingFace's `TransfoXLLMHeadModel`, so the
released checkpoints load as they are; the official PyTorch code reads row k - i
(`head_logprob[:, -i]`), which matters only when importing weights it trained (reverse the rows).
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from xlpretrain.models.precision import einsum_float32


@dataclasses.dataclass(frozen=True)
class Bin:
    start: int
    end: int
    width: int          # d_embed // div_val**i
    emb_proj: str | None  # the input projection's parameter name, or None
    out_proj: str | None  # the output projection's parameter name (may be the input's), or None


def bins(vocab_size: int, d_embed: int, d_proj: int, cutoffs=(), div_val: int = 1, tie_projs=(),
         proj_same_dim: bool = True) -> list[Bin]:
    """The bins of the vocabulary and the parameter names of their projections."""
    edges = [0, *cutoffs, vocab_size]
    tie = list(tie_projs) + [False] * (len(edges) - 1 - len(tie_projs))
    result = []
    for i in range(len(edges) - 1):
        width = d_embed // div_val ** i
        if div_val == 1:
            projected = d_proj != d_embed
            emb_proj = "emb_proj_0" if projected else None  # one table, one projection
            out_proj = ("emb_proj_0" if tie[i] else f"out_proj_{i}") if projected else None
        else:
            projected = proj_same_dim or width != d_proj
            emb_proj = f"emb_proj_{i}" if projected else None
            out_proj = (emb_proj if tie[i] else f"out_proj_{i}") if projected else None
        result.append(Bin(edges[i], edges[i + 1], width, emb_proj, out_proj))
    return result


def _pick(scores, index):
    """scores [..., n], index [...] -> scores[..., index]."""
    return jnp.take_along_axis(scores, index[..., None], axis=-1)[..., 0]


class AdaptiveSoftmax(nn.Module):
    vocab_size: int
    d_embed: int
    d_proj: int
    init_std: float
    scale: bool = True
    cutoffs: tuple = ()
    div_val: int = 1
    tie_projs: tuple = ()
    proj_same_dim: bool = True
    proj_init_std: float = 0.01
    tail_capacity: tuple = ()  # per tail bin, the fraction of a batch's tokens whose logits `nll` computes

    def setup(self):
        self.bins = bins(self.vocab_size, self.d_embed, self.d_proj, self.cutoffs, self.div_val, self.tie_projs,
                         self.proj_same_dim)
        normal = nn.initializers.normal(self.init_std)

        def table(name, rows, width):
            axes = ("vocab", "embed" if width == self.d_proj else None)
            return self.param(name, nn.with_logical_partitioning(normal, axes), (rows, width))

        if self.div_val == 1:
            self.table = table("embedding", self.vocab_size, self.d_embed)
            self.tables = [self.table[b.start:b.end] for b in self.bins]
        else:
            self.tables = [table(f"embedding_{i}", b.end - b.start, b.width) for i, b in enumerate(self.bins)]
        self.bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                               (self.vocab_size,))
        projections = {}
        for b in self.bins:
            for name in (b.emb_proj, b.out_proj):
                if name and name not in projections:
                    projections[name] = self.param(
                        name, nn.with_logical_partitioning(nn.initializers.normal(self.proj_init_std), ("embed", None)),
                        (self.d_proj, b.width))
        self.projections = projections
        if len(self.bins) > 1:
            clusters = len(self.bins) - 1
            self.cluster_weight = self.param("cluster_weight", nn.with_logical_partitioning(normal, (None, None)),
                                             (clusters, self.d_embed))
            self.cluster_bias = self.param("cluster_bias", nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
                                           (clusters,))

    def embed(self, tokens):
        """[batch, length] int -> [batch, length, d_proj] (d_embed when nothing is projected)."""
        def project(vectors, b: Bin):
            return jnp.einsum("ble,de->bld", vectors, self.projections[b.emb_proj]) if b.emb_proj else vectors

        if self.div_val == 1:
            out = project(jnp.take(self.table, tokens, axis=0), self.bins[0])
        else:
            out = 0.0
            for b, table in zip(self.bins, self.tables):
                vectors = project(jnp.take(table, jnp.clip(tokens - b.start, 0, b.end - b.start - 1), axis=0), b)
                out = out + jnp.where(((tokens >= b.start) & (tokens < b.end))[..., None], vectors, 0.0)
        return out * (self.d_proj ** 0.5) if self.scale else out

    def _bin_logits(self, hidden, i: int):
        """Logits of bin i's words (bin 0: followed by the cluster logits)."""
        b = self.bins[i]
        if b.out_proj:
            hidden = jnp.einsum("...d,de->...e", hidden, self.projections[b.out_proj].astype(hidden.dtype))
        weight, bias = self.tables[i], self.bias[b.start:b.end]
        if i == 0 and len(self.bins) > 1:
            weight = jnp.concatenate([weight, self.cluster_weight])
            bias = jnp.concatenate([bias, self.cluster_bias])
        # In the hidden states' dtype, with float32 logits.
        return einsum_float32("...e,ve->...v", hidden, weight.astype(hidden.dtype)) + bias

    def logits(self, hidden):
        """[batch, length, d_proj] -> [batch, length, vocab] scores whose softmax is the model's
        distribution: the logits without cutoffs, the log-probabilities with them."""
        if len(self.bins) == 1:
            return nn.with_logical_constraint(self._bin_logits(hidden, 0), ("batch", "length", "vocab"))
        head = jax.nn.log_softmax(self._bin_logits(hidden, 0), axis=-1)
        first = self.bins[0].end
        parts = [head[..., :first]]
        for i in range(1, len(self.bins)):
            parts.append(head[..., first + i - 1, None] + jax.nn.log_softmax(self._bin_logits(hidden, i), axis=-1))
        return nn.with_logical_constraint(jnp.concatenate(parts, axis=-1), ("batch", "length", "vocab"))

    def nll(self, hidden, targets):
        """Negative log-likelihood in nats of `targets` [batch, length] -> [batch, length]."""
        head_logits = self._bin_logits(hidden, 0)
        head_norm = jax.nn.logsumexp(head_logits, axis=-1)
        first = self.bins[0]
        nll = head_norm - _pick(head_logits, jnp.clip(targets, 0, first.end - 1))
        for i, b in enumerate(self.bins[1:], start=1):
            in_bin = (targets >= b.start) & (targets < b.end)
            tail_nll = self._tail_nll(hidden, targets, in_bin, i) + head_norm - head_logits[..., first.end + i - 1]
            nll = jnp.where(in_bin, tail_nll, nll)
        return nll

    def _tail_nll(self, hidden, targets, in_bin, i: int):
        """NLL within tail bin i of the tokens whose targets are in it (`in_bin`) -> [batch, length];
        values elsewhere are not used. With tail_capacity, the bin's logits are computed only for those
        tokens, gathered into a buffer of ceil(capacity * tokens) rows (the official code's
        index_select with static shapes); a batch with more of them computes every token's."""
        b = self.bins[i]
        local = jnp.clip(targets - b.start, 0, b.end - b.start - 1)

        def within(hidden, local):
            logits = self._bin_logits(hidden, i)
            return jax.nn.logsumexp(logits, axis=-1) - _pick(logits, local)

        n = targets.size
        rows = math.ceil(self.tail_capacity[i - 1] * n) if self.tail_capacity else n
        if rows >= n:
            return within(hidden, local)
        flat_hidden, flat_local = hidden.reshape(n, hidden.shape[-1]), local.reshape(n)
        flat_in_bin = in_bin.reshape(n)
        count = jnp.sum(flat_in_bin)

        def gathered(_):
            index = jnp.nonzero(flat_in_bin, size=rows, fill_value=0)[0]
            values = jnp.where(jnp.arange(rows) < count, within(flat_hidden[index], flat_local[index]), 0.0)
            return jnp.zeros(n, values.dtype).at[index].add(values)

        return jax.lax.cond(count <= rows, gathered, lambda _: within(flat_hidden, flat_local),
                            None).reshape(targets.shape)
