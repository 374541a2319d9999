"""Sinusoidal relative position embeddings (Transformer-XL, Dai et al. 2019, section 3.3)."""

import jax.numpy as jnp


def relative_distances(klen: int, clamp_len: int) -> jnp.ndarray:
    """Distances [klen-1, ..., 1, 0], descending as the official code, clamped to `clamp_len` when
    it is positive (every key further than `clamp_len` shares the embedding of `clamp_len`)."""
    distances = jnp.arange(klen - 1, -1, -1, dtype=jnp.float32)
    if clamp_len > 0:
        distances = jnp.minimum(distances, clamp_len)
    return distances


def sinusoid(positions: jnp.ndarray, d_model: int) -> jnp.ndarray:
    """[n] positions -> [n, d_model] embeddings [sin(p f) | cos(p f)], f_k = 10000^(-2k/d_model).

    The sin and cos halves are concatenated, not interleaved (as the official code).
    """
    inv_freq = 1.0 / (10000.0 ** (jnp.arange(0, d_model, 2, dtype=jnp.float32) / d_model))
    angles = positions[:, None] * inv_freq[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
