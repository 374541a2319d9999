"""The training state: everything a resumed run needs besides the config and the data."""

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
    step: jax.Array   # number of completed steps; the next batch is stream.batch_at(step)
    params: Any
    opt_state: Any
    rng: jax.Array    # base key; step s draws its dropout from fold_in(rng, s)
    memory: Any       # what the objective carries between steps (Transformer-XL memory)
