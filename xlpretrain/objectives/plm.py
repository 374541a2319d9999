"""`plm`: XLNet's permutation language modelling (Yang et al. 2019) with two-stream attention.

Each step draws, for every row, `num_predict` targets and a factorization order
(`permutation.sample`, keyed by the step). The content stream reads the real tokens; the query
stream starts from `mask_emb` at the targets and predicts each from the tokens before it in the
order (and the memory). The loss is the mean NLL of the targets' own tokens over the real targets
(`sum(nll * weight) / sum(weight)`, as the original). The memory is the layer inputs of each
row's first `reuse_len` positions, which the next batch continues (data/xlnet.py), so it is carried
between steps as `ar` carries it; rows that start over (`batch["reset"]`) start from an empty one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from xlpretrain import config as config_lib
from xlpretrain.models.transformer import MEMORY_AXES, Memory, Permutation, TransformerXL
from xlpretrain.objectives import permutation
from xlpretrain.objectives.mlm import count, masked_lm_metrics, masked_lm_summary


def num_predict(plm: ml_collections.ConfigDict, length: int) -> int:
    """Targets per sequence: `plm.num_predict`, or length / partial_k when that is set (K of the paper)."""
    return int(length / plm.partial_k) if plm.partial_k else plm.num_predict


class PermutationLM:
    data = "xlnet"
    memory_axes = MEMORY_AXES

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config_lib.model_config(config)
        self.plm = config.plm
        self.model = TransformerXL(self.config)

    def init_params(self, rng: jax.Array):
        batch, length = 2, 2  # bi_data needs an even batch
        tokens = jnp.zeros((batch, length), jnp.int32)
        stub = Permutation(can_see=jnp.ones((batch, length, length), bool),
                           target_mapping=jnp.zeros((batch, 1, length)))
        return self.model.init(rng, tokens, self.init_memory(batch), tokens, permutation=stub)["params"]

    def init_memory(self, batch_size: int) -> Memory:
        return Memory.empty(self.config, batch_size)

    def loss(self, params, batch, memory: Memory, rng: jax.Array, train: bool):
        """batch: tokens, token_types [B, L] int32; word_starts, functional [B, L] bool; reversed,
        reset [B] bool (data/xlnet.py)."""
        sample_rng, dropout_rng = jax.random.split(rng)
        tokens = batch["tokens"]
        p = self.plm
        order, positions, weights = permutation.sample(
            sample_rng, batch["word_starts"], batch["functional"], batch["reversed"], self.config.reuse_len,
            num_predict(p, tokens.shape[1]), p.perm_size, p.mask_alpha, p.mask_beta, p.max_span)
        variables = {"params": params}
        g, memory = self.model.apply(variables, tokens, memory.reset(batch["reset"]), batch["token_types"],
                                     deterministic=not train, permutation=order, rngs={"dropout": dropout_rng})
        logits = self.model.apply(variables, g, method=TransformerXL.logits)
        metrics = masked_lm_metrics(logits, jnp.take_along_axis(tokens, positions, axis=1), weights)
        total, n = metrics["nll"]
        return total / jnp.maximum(n, 1.0), (memory, metrics)

    @staticmethod
    def summarize(totals) -> dict:
        return masked_lm_summary(totals)

    @staticmethod
    def param_report(params) -> list[tuple[str, int]]:
        """HuggingFace `XLNetLMHeadModel` counts the tied softmax once, with its bias."""
        bias = params["embed"]["vocab"]["bias"].size
        return [("transformer (HF XLNetModel)", count(params) - bias), ("LM head bias (lm_loss.bias)", bias)]
