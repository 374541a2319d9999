"""Random batches in the shapes of a real one, for timing a config without its corpus
(`xlpretrain bench --synthetic`): token ids uniform over the vocabulary, every position valid and
maskable, no row starting a new document, token types 0 then 1 from the middle, next-sentence
labels at random."""

from __future__ import annotations

import numpy as np

FALSE_FLAGS = ("reset", "reversed")  # per-row flags that would change what a row means when set


def batch(shapes: dict[str, tuple[tuple, type]], vocab_size: int, seed: int) -> dict[str, np.ndarray]:
    """shapes: name -> (shape, dtype), as a stream's `batch_shapes` gives them."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in shapes.items():
        if name == "tokens":
            out[name] = rng.integers(0, vocab_size, shape, dtype=np.int32)
        elif name == "token_types":
            out[name] = (np.arange(shape[-1]) >= shape[-1] // 2).astype(np.int32) * np.ones(shape, np.int32)
        elif name == "next_sentence":
            out[name] = rng.integers(0, 2, shape, dtype=np.int32)
        elif np.dtype(dtype) == np.bool_:
            out[name] = np.full(shape, name not in FALSE_FLAGS)
        else:
            raise ValueError(f"no synthetic values for batch field {name!r}")
    return out
