"""Helpers for the tests against HuggingFace `transformers` models (torch, CPU)."""

import flax.linen as nn
import jax
import numpy as np
import torch


def randomize(hf_model, std: float = 0.2):
    """HuggingFace zero-initialises biases and sets LayerNorms to 1; random values test more."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in hf_model.parameters():
            p.normal_(0.0, std)
    return hf_model.eval()


def state_of(hf_model) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in hf_model.state_dict().items()}


def hf_count(cls, config) -> int:
    """The parameter count of a transformers model, built on the meta device (no memory)."""
    with torch.device("meta"):
        return cls(config).num_parameters()


def shapes(module, *args, **kwargs):
    """The params tree of a Flax module, as shapes."""
    return nn.meta.unbox(jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs)["params"]))
