"""`rtd`: ELECTRA's replaced-token detection (Clark et al. 2020), as in the paper and its code.

A small generator (the same encoder at `rtd.generator_size` of the discriminator's hidden size,
heads of 64 dimensions, 4x feed-forward) is trained as a masked LM on ELECTRA's masking (15%, 25%
for large; [MASK] 85%, unchanged 15%, no random tokens). One difference from ELECTRA's code: the
positions are BERT's k distinct ones, where `pretrain_helpers.mask` draws k with replacement and
collapses repeats (at 125 candidates and k = 19, about 17.7 distinct positions on average). Its
softmax at temperature 1 fills the masked positions with samples, through which no gradient flows;
the discriminator labels every non-padding token as replaced (a sample that differs from the
original) or original. The two share the token, position and token-type embeddings and the
embedding LayerNorm, not the projections.

    loss = rtd.generator_weight * generator MLM loss + rtd.discriminator_weight * discriminator BCE
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from xlpretrain import config as config_lib
from xlpretrain.models.heads import DiscriminatorHead, MaskedLMHead
from xlpretrain.models.transformer import Embeddings, TransformerXL, TransformerXLConfig
from xlpretrain.objectives import masking
from xlpretrain.objectives.mlm import MaskedLM, at, count, hidden_states, masked_lm_metrics, masked_lm_summary


def generator_config(discriminator: TransformerXLConfig, size: float, layers: float) -> TransformerXLConfig:
    """ELECTRA's generator (`run_pretraining.py`, `get_generator_config`): hidden size scaled by
    `size`, layers by `layers`, one head per 64 dimensions, feed-forward 4x the hidden size; the
    embedding size stays the discriminator's, as the embeddings are shared."""
    d_model = round(discriminator.d_model * size)
    n_head = max(1, d_model // 64)
    return dataclasses.replace(discriminator, d_model=d_model, n_head=n_head, d_head=d_model // n_head,
                               d_inner=4 * d_model, n_layer=round(discriminator.n_layer * layers),
                               d_embed=discriminator.embed_size)


class Electra(nn.Module):
    """Shared embeddings, generator (+ MLM head over the tied vocabulary), discriminator (+ binary head)."""

    discriminator_config: TransformerXLConfig
    generator_config: TransformerXLConfig

    def setup(self):
        self.embeddings = Embeddings(self.discriminator_config)
        self.generator = TransformerXL(self.generator_config, self.embeddings)
        self.generator_head = MaskedLMHead(self.generator_config)
        self.discriminator = TransformerXL(self.discriminator_config, self.embeddings)
        self.discriminator_head = DiscriminatorHead(self.discriminator_config)

    def generator_logits(self, batch, positions=None, deterministic: bool = True):
        """[batch, n, vocab] at positions [batch, n] (default: every position)."""
        hidden = hidden_states(self.generator, batch, deterministic)
        picked = hidden if positions is None else at(hidden, positions)
        return self.generator.logits(self.generator_head(picked))

    def discriminator_logits(self, batch, deterministic: bool = True):
        """[batch, length] logits of "replaced"."""
        return self.discriminator_head(hidden_states(self.discriminator, batch, deterministic))

    def __call__(self, batch):
        return self.generator_logits(batch), self.discriminator_logits(batch)


def _binary_nll(logits, labels):
    """-log sigmoid(logits) for label 1, -log(1 - sigmoid(logits)) for label 0."""
    return jax.nn.softplus(logits) - labels * logits


class ReplacedTokenDetection(MaskedLM):
    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.masking = config.masking
        self.rtd = config.rtd
        discriminator = config_lib.model_config(config)
        self.model = Electra(discriminator, generator_config(discriminator, config.rtd.generator_size,
                                                             config.rtd.generator_layers))

    def loss(self, params, batch, memory, rng, train: bool):
        """batch: tokens, token_types [B, L] int32; valid, maskable, word_starts [B, L] bool."""
        mask_rng, sample_rng, gen_rng, disc_rng = jax.random.split(rng, 4)
        inputs, positions, weights, targets = self.corrupt(mask_rng, batch)
        variables = {"params": params}
        logits = self.model.apply(variables, dict(batch, tokens=inputs), positions, deterministic=not train,
                                  rngs={"dropout": gen_rng}, method=Electra.generator_logits)
        metrics = {"generator_" + k: v for k, v in masked_lm_metrics(logits, targets, weights).items()}
        gen_total, n_masked = metrics["generator_nll"]

        samples = jax.random.categorical(sample_rng, jax.lax.stop_gradient(logits) / self.rtd.temperature)
        fake = masking.replace_at(batch["tokens"], positions, jnp.where(weights > 0, samples, targets))
        replaced = (fake != batch["tokens"]).astype(jnp.float32)
        disc_logits = self.model.apply(variables, dict(batch, tokens=fake), deterministic=not train,
                                       rngs={"dropout": disc_rng}, method=Electra.discriminator_logits)
        valid = batch["valid"].astype(jnp.float32)
        n_valid = jnp.sum(valid)
        disc_total = jnp.sum(_binary_nll(disc_logits, replaced) * valid)
        predicted = (disc_logits > 0).astype(jnp.float32) * valid
        true_positives = jnp.sum(predicted * replaced)
        metrics.update(
            discriminator_nll=(disc_total, n_valid),
            discriminator_correct=(jnp.sum((predicted == replaced) * valid), n_valid),
            precision=(true_positives, jnp.sum(predicted)),
            recall=(true_positives, jnp.sum(replaced)),
            replaced=(jnp.sum(replaced), n_valid))
        loss = (self.rtd.generator_weight * gen_total / jnp.maximum(n_masked, 1.0)
                + self.rtd.discriminator_weight * disc_total / jnp.maximum(n_valid, 1.0))
        return loss, (memory, metrics)

    def summarize(self, totals) -> dict:
        def ratio(name):
            total, weight = totals[name]
            return float(total) / max(float(weight), 1.0)

        generator = masked_lm_summary(totals, "generator_")
        discriminator_loss = ratio("discriminator_nll")
        return {"loss": self.rtd.generator_weight * generator["generator_loss"]
                + self.rtd.discriminator_weight * discriminator_loss,
                **generator, "discriminator_loss": discriminator_loss,
                "discriminator_accuracy": ratio("discriminator_correct"),
                "precision": ratio("precision"), "recall": ratio("recall"), "replaced_fraction": ratio("replaced"),
                "tokens": int(totals["replaced"][1])}

    def param_report(self, params) -> list[tuple[str, int]]:
        """The discriminator as HuggingFace counts `ElectraForPreTraining` (shared embeddings
        included, the generator's output bias not), and what the generator adds to it."""
        embeddings = count(params["embeddings"]) - params["embeddings"]["vocab"]["bias"].size
        discriminator = embeddings + count(params["discriminator"]) + count(params["discriminator_head"])
        generator = count(params["generator"]) + count(params["generator_head"]) + params["embeddings"]["vocab"]["bias"].size
        return [("discriminator (HF ElectraForPreTraining)", discriminator),
                ("generator without the shared embeddings", generator),
                ("generator as HF ElectraForMaskedLM counts it", generator + embeddings)]
