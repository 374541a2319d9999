"""Objectives: each turns a batch into a loss. `config.objective` picks one from REGISTRY.

An objective provides
    init_params(rng) -> params (boxed with logical axis names)
    init_memory(batch_size) -> the state it carries between steps, and `memory_axes`, its logical axes
    loss(params, batch, memory, rng, train) -> (mean loss, (next memory, metrics)), where every metric
        is a (sum, weight) pair so that any number of batches can be pooled exactly
    summarize(totals) -> the reported metrics of pooled (sum, weight) pairs
"""

from xlpretrain.models.transformer import TransformerXLConfig
from xlpretrain.objectives.ar import CausalLM

REGISTRY = {"ar": CausalLM}


def build(name: str, model: TransformerXLConfig):
    return REGISTRY[name](model)
