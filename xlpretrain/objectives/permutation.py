"""XLNet's choice of prediction targets and factorization order (Yang et al. 2019, section 2.3 and
appendix A), on device and keyed by the step.

The original draws the targets once, offline (`data_utils._sample_mask`), and the order per
example in the input pipeline (`_local_perm`); here both come from the key of the step, so every
step draws new targets and a resumed run draws the same ones. A sequence is two halves, the
`reuse_len` positions that become memory and the rest, each with its own targets and order:

- targets: spans of n pieces, P(n) proportional to 1/n for n = 1..max_span, each in a context of
  n * mask_alpha / mask_beta positions (a random part of it before the span, the rest after) and
  starting at a word start; then random positions until exactly the half's goal. Reversed (bi_data)
  rows are drawn on the flipped row, as the original. Like the original (its `seg[beg]` test, PR
  #16), a span is n pieces, not n words.
- order: one random permutation of `perm_size` positions, the same within every block of
  perm_size; context (non-target) tokens come first and are visible to everyone, and see neither
  targets nor the functional tokens (SEP, CLS), which are never targets but keep their place in
  the order. A target sees the context and the targets and functional tokens before it, never
  itself.
- halves: the first never sees the second (its states become the next segment's memory); the
  second sees all of the first.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xlpretrain.models.transformer import Permutation


def span_mask(rng, starts, goal, mask_alpha: int, mask_beta: int, max_span: int):
    """`_sample_mask` on one segment without its final fill: [n] word starts -> [n] chosen positions.

    Stops when `goal` positions are chosen, or a span would reach the end.
    """
    n = starts.shape[0]
    index = jnp.arange(n)
    # next_start[i]: the first word start at or after i (n if none), with next_start[n] = n.
    next_start = jax.lax.cummin(jnp.where(starts, index, n), reverse=True)
    next_start = jnp.concatenate([next_start, jnp.array([n])])
    log_p = jnp.log(1.0 / jnp.arange(1, max_span + 1))

    def body(state):
        i, cur, count, mask, _ = state
        length_key, context_key = jax.random.split(jax.random.fold_in(rng, i))
        span = jnp.minimum(jax.random.categorical(length_key, log_p) + 1, goal - count)
        context = span * mask_alpha // mask_beta
        left = jax.random.randint(context_key, (), 0, context)
        begin = next_start[jnp.minimum(cur + left, n)]
        end = begin + span
        fits = end < n
        mask = jnp.where(fits, mask | ((index >= begin) & (index < end)), mask)
        return i + 1, end + context - left, count + jnp.where(fits, span, 0), mask, ~fits

    def more(state):
        _, cur, count, _, stopped = state
        return ~stopped & (cur < n) & (count < goal)

    state = (0, 0, 0, jnp.zeros(n, bool), False)
    return jax.lax.while_loop(more, body, state)[3]


def fill(rng, mask, goal):
    """Adds random unchosen positions to `mask` [n] until it holds `goal`."""
    keys = jnp.where(mask, jnp.inf, jax.random.uniform(rng, mask.shape))
    rank = jnp.argsort(jnp.argsort(keys))
    return mask | (rank < goal - mask.sum())


def targets(rng, starts, reverse, goal, mask_alpha: int, mask_beta: int, max_span: int):
    """Exactly `goal` positions of one half [n]: spans, then the fill (drawn on the flipped half
    when `reverse`)."""
    span_key, fill_key = jax.random.split(rng)
    starts = jnp.where(reverse, starts[::-1], starts)
    mask = fill(fill_key, span_mask(span_key, starts, goal, mask_alpha, mask_beta, max_span), goal)
    return jnp.where(reverse, mask[::-1], mask)


def order_visibility(rng, is_target, functional, perm_size: int):
    """`_local_perm` on one half [n]: [n, n] True where position i may attend to j (query stream)."""
    n = is_target.shape[0]
    index = jnp.arange(n)
    rank = index // perm_size * perm_size + jax.random.permutation(rng, perm_size)[index % perm_size]
    context = ~is_target & ~functional
    rank = jnp.where(context, -1, rank)
    own = jnp.where(is_target & ~functional, rank, rank + 1)  # a target never sees itself
    return ~((own[:, None] <= rank[None, :]) & ~context[None, :])


def sample(rng, word_starts, functional, reverse, reuse_len: int, num_predict: int, perm_size: int,
           mask_alpha: int, mask_beta: int, max_span: int):
    """The targets and factorization order of a batch.

    word_starts, functional: [batch, length] bool (functional: SEP and CLS); reverse: [batch] bool.
    Returns the `Permutation` for the backbone, target positions [batch, num_predict] int32 (in
    position order) and their weights [batch, num_predict] (0 for the rows left over when
    functional tokens were drawn, as the original's padding).
    """
    batch, length = word_starts.shape
    halves = ((0, reuse_len, num_predict - num_predict // 2), (reuse_len, length, num_predict // 2))

    def one_row(key, starts, functional, reverse):
        chosen, visible = [], []
        for half, (begin, end, goal) in enumerate(halves):
            target_key, order_key = jax.random.split(jax.random.fold_in(key, half))
            chosen.append(targets(target_key, starts[begin:end], reverse, goal, mask_alpha, mask_beta, max_span))
            visible.append(order_visibility(order_key, chosen[-1], functional[begin:end], perm_size))
        first, second = visible
        can_see = jnp.block([[first, jnp.zeros((reuse_len, length - reuse_len), bool)],
                             [jnp.ones((length - reuse_len, reuse_len), bool), second]])
        return can_see, jnp.concatenate(chosen) & ~functional

    keys = jax.vmap(lambda row: jax.random.fold_in(rng, row))(jnp.arange(batch))
    can_see, is_target = jax.vmap(one_row)(keys, word_starts, functional, reverse)
    positions = jnp.argsort(~is_target, axis=1, stable=True)[:, :num_predict].astype(jnp.int32)
    weights = jnp.take_along_axis(is_target, positions, axis=1).astype(jnp.float32)
    target_mapping = jax.nn.one_hot(positions, length) * weights[..., None]
    return Permutation(can_see=can_see, target_mapping=target_mapping), positions, weights
