"""Dropout whose mask costs half the random bits of `flax.linen.Dropout`'s.

`nn.Dropout` draws a float32 uniform, 32 random bits, for every element it may drop; on a CPU the
generator (threefry) is then a tenth of a small Transformer-XL's training step. With
`model.dropout_bits=16` (the default) each 32-bit word of the generator makes the masks of two
elements: its low and high halves are uniform integers in [0, 65536), and an element is kept when
its integer is below round(keep * 65536). The keep probability is that threshold over 65536
(0.899994 for a dropout of 0.1) and the kept elements are scaled by its inverse, so that the
expectation of the output is the input. `model.dropout_bits=32` draws `nn.Dropout`'s masks, bit for
bit. Fewer bits (four masks a word) were measured no faster than 16 and would move the rate by up
to 1/512.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

BITS = (16, 32)
LEVELS = 1 << 16


def keep_mask(key: jax.Array, keep: float, shape: tuple[int, ...], bits: int = 16) -> tuple[jax.Array, float]:
    """A [*shape] boolean mask of independent elements, each True with the probability returned:
    with 16 bits `threshold / 65536` (between 1 / 65536 and 65535 / 65536), with 32 `keep`, drawn
    as `jax.random.bernoulli` (and so `nn.Dropout`) draws it."""
    if bits == 32:
        return jax.random.bernoulli(key, keep, shape), keep
    threshold = min(max(round(keep * LEVELS), 1), LEVELS - 1)
    *lead, n = shape
    words = jax.random.bits(key, (*lead, -(-n // 2)), jnp.uint32)
    # Each half is compared before the two are joined: XLA keeps the joined mask for the backward
    # pass, and as booleans it is a quarter of the bytes of the joined 32-bit halves.
    below = jnp.uint32(threshold)
    kept = jnp.concatenate([(words & jnp.uint32(LEVELS - 1)) < below, (words >> 16) < below], axis=-1)
    return kept[..., :n], threshold / LEVELS


class Dropout(nn.Module):
    """Inverted dropout of `rate`, keyed by the "dropout" RNG stream as `nn.Dropout` is, with masks
    of `bits` random bits per element."""

    rate: float
    bits: int = 16

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        kept, keep = keep_mask(self.make_rng("dropout"), 1.0 - self.rate, x.shape, self.bits)
        return jnp.where(kept, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))
