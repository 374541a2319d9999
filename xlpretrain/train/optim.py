"""The optimizer from `config.train`: Adam(W), linear warm-up then cosine or linear decay,
global-norm clipping.

`train.weight_decay` > 0 gives AdamW (decoupled decay, as BERT's and ELECTRA's AdamWeightDecay),
applied to weights and embeddings but not to biases nor LayerNorm scales. One difference remains
from those originals: optax's Adam corrects the moment estimates for their zero start and theirs
do not, which changes the step size only during the first few thousand steps, well inside their
10,000-step warm-up.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

SCHEDULES = ("cosine", "linear", "linear_after_warmup")


def learning_rate(train: ml_collections.ConfigDict) -> optax.Schedule:
    """0 -> train.lr over warmup_steps, then down to lr * min_lr_ratio at train.steps: along a
    cosine, or (`schedule="linear"`) along BERT's line lr * (1 - step / steps), which starts its
    decay at step 0, so that it meets the warm-up ramp at warmup_steps, or ("linear_after_warmup")
    along XLNet's line from lr at warmup_steps (its `polynomial_decay` of power 1)."""
    end = train.lr * train.min_lr_ratio
    if train.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=train.lr, warmup_steps=train.warmup_steps,
                                                  decay_steps=train.steps, end_value=end)

    def linear(step):
        step = jnp.asarray(step, jnp.float32)
        start = train.warmup_steps if train.schedule == "linear_after_warmup" else 0
        decayed = end + (train.lr - end) * (1.0 - (step - start) / (train.steps - start))
        return jnp.where(step < train.warmup_steps, train.lr * step / max(train.warmup_steps, 1), decayed)

    return linear


def _decayed(params):
    """True for the parameters weight decay applies to: not biases, not LayerNorm scales."""
    def decays(path, _):
        name = str(getattr(path[-1], "key", path[-1]))
        return not (name.endswith("bias") or name == "scale")

    return jax.tree_util.tree_map_with_path(decays, params)


def optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
    adam = optax.adamw(learning_rate(train), b1=train.adam_b1, b2=train.adam_b2, eps=train.adam_eps,
                       weight_decay=train.weight_decay, mask=_decayed)
    return optax.chain(optax.clip_by_global_norm(train.clip_norm), adam)
