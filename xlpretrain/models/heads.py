"""Output heads on the backbone's hidden states (BERT, ELECTRA). The vocabulary logits themselves
come from the backbone's tied table (`TransformerXL.logits`)."""

import flax.linen as nn
import jax.numpy as jnp

from xlpretrain.models.transformer import ACTIVATIONS, TransformerXLConfig, dense, layer_norm


class MaskedLMHead(nn.Module):
    """[..., d_model] -> [..., embed_size]: dense -> activation -> LayerNorm, the transform before the
    tied softmax (BERT `cls.predictions.transform`; ELECTRA `generator_predictions`, whose dense maps
    the generator's hidden size to the shared embedding size)."""

    config: TransformerXLConfig

    @nn.compact
    def __call__(self, h):
        c = self.config
        h = dense(c.embed_size, c.init_std, ("embed", "embedding"), "dense")(h)
        return layer_norm(c, "norm")(ACTIVATIONS[c.activation](h))


class DiscriminatorHead(nn.Module):
    """[batch, length, d_model] -> [batch, length] logits of "this token was replaced"
    (ELECTRA `discriminator_predictions`: dense -> activation -> dense to one unit)."""

    config: TransformerXLConfig

    @nn.compact
    def __call__(self, h):
        c = self.config
        h = ACTIVATIONS[c.activation](dense(c.d_model, c.init_std, ("embed", "mlp"), "dense")(h))
        return dense(1, c.init_std, ("mlp", "unit"), "prediction")(h)[..., 0]


class NextSentenceHead(nn.Module):
    """[batch, length, d_model] -> [batch, 2] logits of "segment B follows segment A": BERT's pooler
    (tanh of a dense layer on the [CLS] position) and its two-way classifier."""

    config: TransformerXLConfig

    @nn.compact
    def __call__(self, h):
        c = self.config
        pooled = jnp.tanh(dense(c.d_model, c.init_std, ("embed", "mlp"), "pooler")(h[:, 0]))
        return dense(2, c.init_std, ("mlp", "classes"), "classifier")(pooled)
