"""`ar`: causal language modelling with Transformer-XL memory.

The loss is the mean next-token NLL over the segment's unmasked positions. The memory (each layer's
input over the last mem_len positions) comes in with the batch and goes out for the next one; rows
whose column starts over (`batch["reset"]`) start from an empty memory.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections

from xlpretrain import config as config_lib
from xlpretrain.models.transformer import MEMORY_AXES, Memory, TransformerXL


class CausalLM:
    data = "stream"
    memory_axes = MEMORY_AXES

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config_lib.model_config(config)
        self.model = TransformerXL(self.config)

    def init_params(self, rng: jax.Array):
        return self.model.init(rng, jnp.zeros((1, 1), jnp.int32), self.init_memory(1))["params"]

    def init_memory(self, batch_size: int) -> Memory:
        return Memory.empty(self.config, batch_size)

    def loss(self, params, batch, memory: Memory, rng: jax.Array, train: bool):
        """batch: tokens [B, T+1] int32, mask [B, T] bool (targets to score), reset [B] bool."""
        inputs, targets = batch["tokens"][:, :-1], batch["tokens"][:, 1:]
        weights = batch["mask"].astype(jnp.float32)
        variables = {"params": params}
        hidden, memory = self.model.apply(variables, inputs, memory.reset(batch["reset"]),
                                          deterministic=not train, rngs={"dropout": rng})
        nll = self.model.apply(variables, hidden, targets, method=TransformerXL.nll)
        total, count = jnp.sum(nll * weights), jnp.sum(weights)
        return total / jnp.maximum(count, 1.0), (memory, {"nll": (total, count)})

    @staticmethod
    def summarize(totals) -> dict:
        total, count = totals["nll"]
        loss = float(total) / float(count)
        return {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "bits_per_token": loss / math.log(2),
                "tokens": int(count)}

    @staticmethod
    def param_report(params) -> list[tuple[str, int]]:
        """No parts to check separately: the total is the official code's count."""
        return []
