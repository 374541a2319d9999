"""The optimizer from `config.train`: Adam, linear warm-up then cosine decay, global-norm clipping."""

import ml_collections
import optax


def learning_rate(train: ml_collections.ConfigDict) -> optax.Schedule:
    """0 -> train.lr over warmup_steps, then a cosine down to lr * min_lr_ratio at train.steps."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=train.lr, warmup_steps=train.warmup_steps,
        decay_steps=train.steps, end_value=train.lr * train.min_lr_ratio)


def optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(train.clip_norm), optax.adam(learning_rate(train)))
