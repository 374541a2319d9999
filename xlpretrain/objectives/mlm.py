"""`mlm`: BERT's masked language modelling (Devlin et al. 2019) on the bidirectional backbone.

Each step masks a fixed number of positions per sequence (`masking.choose_positions`: mask_prob of
the tokens, at most max_predictions_per_seq, never [CLS], [SEP] or padding), replaces 80% of them
by [MASK], 10% by a random token and leaves 10% unchanged, on device with the step's key. The loss
is the mean NLL of the original tokens over the chosen positions, plus BERT's next-sentence loss
when the examples carry next-sentence labels (`data.examples.next_sentence`).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from xlpretrain import config as config_lib
from xlpretrain.models.heads import MaskedLMHead, NextSentenceHead
from xlpretrain.models.transformer import Memory, TransformerXL, TransformerXLConfig
from xlpretrain.objectives import masking


def hidden_states(backbone: TransformerXL, batch, deterministic: bool):
    """The encoder's [batch, length, d_model] output for tokens, token types and padding."""
    tokens = batch["tokens"]
    hidden, _ = backbone(tokens, Memory.empty(backbone.config, tokens.shape[0]), batch["token_types"],
                         batch["valid"], deterministic)
    return hidden


def at(hidden, positions):
    """[batch, length, d] at positions [batch, n] -> [batch, n, d]."""
    return jnp.take_along_axis(hidden, positions[..., None], axis=1)


class MaskedLMModel(nn.Module):
    """Encoder + MLM head over the tied vocabulary (+ BERT's pooler and next-sentence classifier).
    HuggingFace `BertForMaskedLM`, `BertForPreTraining` and `ElectraForMaskedLM` in one shape."""

    config: TransformerXLConfig
    next_sentence: bool = False

    def setup(self):
        self.encoder = TransformerXL(self.config)
        self.head = MaskedLMHead(self.config)
        if self.next_sentence:
            self.nsp = NextSentenceHead(self.config)

    def __call__(self, batch, positions=None, deterministic: bool = True):
        """batch: tokens, token_types, valid [batch, length]. Returns the vocabulary logits at
        `positions` [batch, n] (default: every position) and the next-sentence logits [batch, 2]
        (None without the next-sentence head)."""
        hidden = hidden_states(self.encoder, batch, deterministic)
        picked = hidden if positions is None else at(hidden, positions)
        logits = self.encoder.logits(self.head(picked))
        return logits, self.nsp(hidden) if self.next_sentence else None


def masked_lm_metrics(logits, targets, weights) -> dict:
    """NLL and accuracy (sum, weight) pairs over weighted positions; logits [batch, n, vocab]."""
    nll = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    count = jnp.sum(weights)
    correct = jnp.sum((jnp.argmax(logits, axis=-1) == targets) * weights)
    return {"nll": (jnp.sum(nll * weights), count), "correct": (correct, count)}


def masked_lm_summary(totals, prefix: str = "") -> dict:
    total, count = totals[prefix + "nll"]
    loss = float(total) / max(float(count), 1.0)
    return {prefix + "loss": loss, prefix + "ppl": math.exp(min(loss, 700.0)),
            prefix + "accuracy": float(totals[prefix + "correct"][0]) / max(float(count), 1.0),
            prefix + "predictions": int(count)}


def count(tree) -> int:
    return sum(x.size for x in jax.tree.leaves(tree))


def encoder_report(encoder_params) -> list[tuple[str, int]]:
    """The encoder's count (HuggingFace `BertModel`/`ElectraModel` without pooler), the tied output
    bias (which HuggingFace counts with the MLM head) left out."""
    return [("encoder (HF BertModel/ElectraModel without pooler)",
             count(encoder_params) - encoder_params["embed"]["vocab"]["bias"].size)]


class MaskedLM:
    data = "examples"
    memory_axes = ()

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.masking = config.masking
        self.next_sentence = config.data.examples.next_sentence
        self.model = MaskedLMModel(config_lib.model_config(config), self.next_sentence)

    def init_params(self, rng):
        batch = {k: jnp.zeros((1, 2), dtype) for k, dtype in
                 (("tokens", jnp.int32), ("token_types", jnp.int32), ("valid", bool))}
        return self.model.init(rng, batch)["params"]

    def init_memory(self, batch_size: int):
        return ()

    def corrupt(self, rng, batch):
        """(inputs with the chosen positions replaced, positions, weights, original tokens there)."""
        m = self.masking
        choose_rng, corrupt_rng = jax.random.split(rng)
        positions, weights = masking.choose_positions(
            choose_rng, batch["maskable"], batch["valid"].sum(axis=1), m.mask_prob, m.max_predictions,
            batch["word_starts"] if m.whole_word else None)
        inputs = masking.corrupt(corrupt_rng, batch["tokens"], positions, weights, m.mask_id,
                                 self.config.model.vocab_size, m.mask_frac, m.random_frac)
        return inputs, positions, weights, jnp.take_along_axis(batch["tokens"], positions, axis=1)

    def loss(self, params, batch, memory, rng, train: bool):
        """batch: tokens, token_types [B, L] int32; valid, maskable, word_starts [B, L] bool;
        next_sentence [B] int32 (1: segment B is a random one) when the examples have it."""
        mask_rng, dropout_rng = jax.random.split(rng)
        inputs, positions, weights, targets = self.corrupt(mask_rng, batch)
        logits, nsp_logits = self.model.apply({"params": params}, dict(batch, tokens=inputs), positions,
                                              deterministic=not train, rngs={"dropout": dropout_rng})
        metrics = masked_lm_metrics(logits, targets, weights)
        total, n = metrics["nll"]
        loss = total / jnp.maximum(n, 1.0)
        if self.next_sentence:
            labels = batch["next_sentence"]
            rows = batch["valid"][:, 0].astype(jnp.float32)  # evaluation pads with empty rows
            nll = jax.nn.logsumexp(nsp_logits, -1) - jnp.take_along_axis(nsp_logits, labels[:, None], -1)[:, 0]
            metrics["nsp_nll"] = (jnp.sum(nll * rows), jnp.sum(rows))
            metrics["nsp_correct"] = (jnp.sum((jnp.argmax(nsp_logits, -1) == labels) * rows), jnp.sum(rows))
            loss = loss + metrics["nsp_nll"][0] / jnp.maximum(metrics["nsp_nll"][1], 1.0)
        return loss, (memory, metrics)

    def summarize(self, totals) -> dict:
        line = masked_lm_summary(totals)
        if self.next_sentence:
            line.update(masked_lm_summary(totals, "nsp_"))
            del line["nsp_ppl"], line["nsp_predictions"]
        return line

    def param_report(self, params) -> list[tuple[str, int]]:
        """Counts that can be checked one by one against HuggingFace."""
        report = encoder_report(params["encoder"])
        report.append(("MLM head: transform + output bias (tied decoder weight not counted again)",
                       count(params["head"]) + params["encoder"]["embed"]["vocab"]["bias"].size))
        if self.next_sentence:
            pooler = count(params["nsp"]["pooler"])
            report.append(("pooler (HF BertModel's add_pooling_layer)", pooler))
            report.append(("next-sentence classifier", count(params["nsp"]["classifier"])))
            report.append(("= encoder + pooler (HF BertModel)", report[0][1] + pooler))
        return report
