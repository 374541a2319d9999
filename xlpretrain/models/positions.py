"""Position information: the sinusoidal relative embeddings of Transformer-XL (Dai et al. 2019,
section 3.3); BERT's learned absolute positions are a table in `transformer.Embeddings`."""

import jax.numpy as jnp


def relative_distances(k_len: int, q_len: int, causal: bool, clamp_len: int) -> jnp.ndarray:
    """The distances the position term scores, in descending order as the official code.

    Causal: [k_len-1, ..., 1, 0], every distance a query can see. Bidirectional: down to -(q_len-1)
    as well (XLNet's `bi` sequence), since the first query also sees the last key.
    With `clamp_len` > 0, distances beyond +-clamp_len share the embedding of +-clamp_len.
    """
    stop = -1 if causal else -q_len
    distances = jnp.arange(k_len - 1, stop, -1, dtype=jnp.float32)
    if clamp_len > 0:
        distances = jnp.clip(distances, -clamp_len, clamp_len)
    return distances


def sinusoid(positions: jnp.ndarray, d_model: int) -> jnp.ndarray:
    """[n] positions -> [n, d_model] embeddings [sin(p f) | cos(p f)], f_k = 10000^(-2k/d_model).

    The sin and cos halves are concatenated, not interleaved (as the official code).
    """
    inv_freq = 1.0 / (10000.0 ** (jnp.arange(0, d_model, 2, dtype=jnp.float32) / d_model))
    angles = positions[:, None] * inv_freq[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
