"""Objectives: each turns a batch into a loss. `config.objective` picks one from REGISTRY.

An objective is built from the whole config (`model.vocab_size` and `masking.mask_id` filled in
from the data) and provides
    data: "stream" (ordered token stream, data/stream.py), "examples" (data/examples.py) or
        "xlnet" (XLNet's examples that continue the memory, data/xlnet.py)
    init_params(rng) -> params (boxed with logical axis names)
    init_memory(batch_size) -> the state it carries between steps, and `memory_axes`, its logical axes
    loss(params, batch, memory, rng, train) -> (mean loss, (next memory, metrics)), where every metric
        is a (sum, weight) pair so that any number of batches can be pooled exactly
    summarize(totals) -> the reported metrics of pooled (sum, weight) pairs
    param_report(params) -> [(what, count)], counts that can be checked against HuggingFace
"""

import ml_collections

from xlpretrain.objectives.ar import CausalLM
from xlpretrain.objectives.mlm import MaskedLM
from xlpretrain.objectives.plm import PermutationLM
from xlpretrain.objectives.rtd import ReplacedTokenDetection

REGISTRY = {"ar": CausalLM, "mlm": MaskedLM, "plm": PermutationLM, "rtd": ReplacedTokenDetection}


def build(config: ml_collections.ConfigDict):
    return REGISTRY[config.objective](config)
