"""Vocabulary layers: the input embedding and the output softmax that shares its table."""

import flax.linen as nn
import jax
import jax.numpy as jnp


class TiedSoftmax(nn.Module):
    """Token embedding [vocab, d_embed] used both ways: `embed` looks tokens up (scaled by
    sqrt(d_embed) with `scale`, as the official Transformer-XL code; BERT does not scale), `logits`
    scores hidden states against the same table plus an output bias (the official `tie_weight`;
    BERT's `cls.predictions.bias`; ELECTRA's generator `output_bias`)."""

    vocab_size: int
    d_embed: int
    init_std: float
    scale: bool = True

    def setup(self):
        self.table = self.param(
            "embedding", nn.with_logical_partitioning(nn.initializers.normal(self.init_std), ("vocab", "embed")),
            (self.vocab_size, self.d_embed))
        self.bias = self.param(
            "bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)), (self.vocab_size,))

    def embed(self, tokens):
        """[batch, length] int -> [batch, length, d_embed]."""
        vectors = jnp.take(self.table, tokens, axis=0)
        return vectors * (self.d_embed ** 0.5) if self.scale else vectors

    def logits(self, hidden):
        """[batch, length, d_embed] -> [batch, length, vocab]."""
        logits = jnp.einsum("bld,vd->blv", hidden, self.table) + self.bias
        return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))

    def nll(self, hidden, targets):
        """Negative log-likelihood in nats of `targets` [batch, length] -> [batch, length]."""
        logits = self.logits(hidden)
        target_logits = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
        return jax.nn.logsumexp(logits, axis=-1) - target_logits
