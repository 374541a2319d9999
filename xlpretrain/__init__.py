"""xlpretrain: language-model pretraining on the Transformer-XL backbone, in JAX/Flax."""

__version__ = "0.1.0"
