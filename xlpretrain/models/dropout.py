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

The 16-bit masks' words are `jax.random.bits`'s, computed by `random_words`: the same threefry
hash with its 20 rounds written out. JAX lowers the hash on a CPU as a loop of 5 iterations, each
a pass over the whole array and a copy of it; written out, XLA computes it in one pass.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

BITS = (16, 32)
LEVELS = 1 << 16
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def random_words(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """`jax.random.bits(key, shape, jnp.uint32)`, bit for bit, for a threefry key (JAX's default,
    with its default `jax_threefry_partitionable`): Threefry-2x32 with 20 rounds (Salmon et al.
    2011) of each element's index in the array, the two output words joined by xor. Other keys and
    settings, and arrays of 2**32 elements or more, go to `jax.random.bits` itself."""
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    impl = str(jax.random.key_impl(key)) if typed else jax.config.jax_default_prng_impl
    if "threefry2x32" not in impl or not jax.config.jax_threefry_partitionable or math.prod(shape) >= 2 ** 32:
        return jax.random.bits(key, shape, jnp.uint32)
    k0, k1 = jax.random.key_data(key) if typed else key
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    strides = np.cumprod((*shape[1:], 1)[::-1])[::-1]
    index = sum((jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
                 for axis, stride in enumerate(strides)), jnp.zeros(shape, jnp.uint32))
    # The index as a 64-bit counter: high word 0, low word the index.
    x0, x1 = jnp.broadcast_to(ks[0], shape), index + ks[1]
    for block in range(5):
        for rotation in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = ((x1 << np.uint32(rotation)) | (x1 >> np.uint32(32 - rotation))) ^ x0
        x0 = x0 + ks[(block + 1) % 3]
        x1 = x1 + ks[(block + 2) % 3] + np.uint32(block + 1)
    return x0 ^ x1


def keep_mask(key: jax.Array, keep: float, shape: tuple[int, ...], bits: int = 16) -> tuple[jax.Array, float]:
    """A [*shape] boolean mask of independent elements, each True with the probability returned:
    with 16 bits `threshold / 65536` (between 1 / 65536 and 65535 / 65536), with 32 `keep`, drawn
    as `jax.random.bernoulli` (and so `nn.Dropout`) draws it."""
    if bits == 32:
        return jax.random.bernoulli(key, keep, shape), keep
    threshold = min(max(round(keep * LEVELS), 1), LEVELS - 1)
    *lead, n = shape
    words = random_words(key, (*lead, -(-n // 2)))
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
