"""Choosing and corrupting the positions a masked-LM objective predicts, on device.

Every random draw comes from the key the caller passes (folded from the step by the train loop),
so the corruption of step s is the same in every run and after every resume.
"""

import jax
import jax.numpy as jnp


def choose_positions(rng, maskable, n_tokens, mask_prob: float, max_predictions: int, word_starts=None):
    """Picks, per sequence, k = min(max_predictions, max(1, round(n_tokens * mask_prob))) distinct
    maskable positions uniformly at random (BERT's `create_masked_lm_predictions`; never more than
    the sequence has maskable tokens).

    maskable:    [batch, length] True where a token may be chosen (not [CLS], [SEP] or padding).
    n_tokens:    [batch] non-padding tokens, specials included (BERT counts them too).
    word_starts: [batch, length] True at the first piece of every word; given, whole words are
                 chosen instead of pieces: words in random order, as long as the count stays <= k.
                 (BERT then skips a word that would overflow and tries smaller ones; here the
                 choice stops at the first overflowing word.)
    Returns positions [batch, max_predictions] int32 and weights [batch, max_predictions] float32,
    1 for the chosen positions, which come first, and 0 for the unused slots.
    """
    batch, length = maskable.shape
    k = jnp.clip(jnp.round(n_tokens * mask_prob), 1, max_predictions)
    k = jnp.minimum(k, maskable.sum(axis=1))
    keys = jax.random.uniform(rng, (batch, length))
    index = jnp.broadcast_to(jnp.arange(length), (batch, length))
    if word_starts is None:
        order = jnp.argsort(jnp.where(maskable, keys, 2.0), axis=1)
        selected = jnp.arange(length)[None, :] < k[:, None]
    else:
        # A special token or padding is a word of its own, and so is what follows it.
        after_unmaskable = jnp.pad(~maskable[:, :-1], ((0, 0), (1, 0)), constant_values=True)
        word = jnp.cumsum(word_starts | ~maskable | after_unmaskable, axis=1) - 1
        word_keys = jnp.where(maskable, jnp.take_along_axis(keys, word, axis=1), 2.0)
        # Pieces of one word share a key, so they are adjacent in this order; a word is taken
        # when its last piece falls within the first k.
        order = jax.vmap(lambda key, i: jnp.lexsort((i, key)))(word_keys, index)
        sorted_word = jnp.take_along_axis(word, order, axis=1)
        last = jnp.concatenate([sorted_word[:, 1:] != sorted_word[:, :-1], jnp.ones((batch, 1), bool)], axis=1)
        word_end = jax.lax.cummin(jnp.where(last, index, length), axis=1, reverse=True)
        selected = word_end < k[:, None]
    positions = order[:, :max_predictions].astype(jnp.int32)
    return positions, selected[:, :max_predictions].astype(jnp.float32)


def corrupt(rng, tokens, positions, weights, mask_id: int, vocab_size: int, mask_frac: float, random_frac: float):
    """The input with every chosen position replaced: by `mask_id` with probability mask_frac, by
    a token drawn uniformly from the vocabulary with probability random_frac, and left as it is
    otherwise. BERT: 0.8 / 0.1 (0.1 unchanged); ELECTRA: 0.85 / 0 (0.15 unchanged).

    tokens [batch, length]; positions, weights [batch, n] from `choose_positions`.
    """
    choice_rng, token_rng = jax.random.split(rng)
    original = jnp.take_along_axis(tokens, positions, axis=1)
    u = jax.random.uniform(choice_rng, positions.shape)
    random_tokens = jax.random.randint(token_rng, positions.shape, 0, vocab_size, tokens.dtype)
    replacement = jnp.where(u < mask_frac, mask_id, jnp.where(u < mask_frac + random_frac, random_tokens, original))
    return replace_at(tokens, positions, jnp.where(weights > 0, replacement, original))


def replace_at(tokens, positions, values):
    """tokens [batch, length] with values [batch, n] written at positions [batch, n]."""
    rows = jnp.arange(tokens.shape[0])[:, None]
    return jnp.asarray(tokens).at[rows, positions].set(values)
