"""Checkpoints with orbax: asynchronous, the last N kept plus the one with the best valid loss.

A checkpoint holds two items: `params`, and `train` (step, optimizer state, RNG, memory), so that
evaluation restores the weights alone. Orbax writes each checkpoint into a temporary directory and
renames it when complete, so a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from xlpretrain.train.state import TrainState

VALID_LOSS = "valid_loss"


def _abstract(tree, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


# Orbax refuses zero-size arrays (a memory with mem_len=0); they are saved as None and rebuilt.
def _without_empty(tree):
    return jax.tree.map(lambda x: None if x.size == 0 else x, tree)


def _with_empty(restored, like):
    return jax.tree.map(lambda r, x: jnp.zeros(x.shape, x.dtype, device=x.sharding) if r is None else r,
                        restored, like, is_leaf=lambda r: r is None)


def committed_steps(directory: Path) -> list[int]:
    """The steps of the checkpoints committed in `directory` (orbax's temporary folders of a write
    in flight or cut short are not), read from the folder names without opening a manager, which
    would create the folder."""
    return [int(path.name) for path in Path(directory).glob("[0-9]*") if path.name.isdigit()]


class Checkpoints:
    def __init__(self, directory: Path, keep: int):
        best = policies.BestN(get_metric_fn=lambda m: m[VALID_LOSS], reverse=True, n=1,
                              keep_checkpoints_without_metrics=False)
        options = ocp.CheckpointManagerOptions(
            best_fn=lambda m: m[VALID_LOSS], best_mode="min", enable_async_checkpointing=True,
            preservation_policy=policies.AnyPreservationPolicy([policies.LatestN(keep), best]))
        self.manager = ocp.CheckpointManager(Path(directory).absolute(), options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def best_step(self) -> int | None:
        """The step with the lowest valid loss, or the latest step when none has one."""
        best = self.manager.best_step()
        return self.latest_step() if best is None else best

    def save(self, state: TrainState, valid_loss: float | None) -> None:
        step = int(state.step)
        rest = {"step": state.step, "opt_state": state.opt_state, "rng": state.rng, "memory": state.memory}
        self.manager.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(state.params),
                                                         train=ocp.args.StandardSave(_without_empty(rest))),
                          metrics=None if valid_loss is None else {VALID_LOSS: valid_loss})

    def restore(self, step: int, like: TrainState, shardings: TrainState) -> TrainState:
        """The state saved at `step`, placed with `shardings`; `like` gives shapes and dtypes."""
        abstract = _abstract(like, shardings)
        rest = {"step": abstract.step, "opt_state": abstract.opt_state, "rng": abstract.rng,
                "memory": abstract.memory}
        restored = self.manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract.params), train=ocp.args.StandardRestore(_without_empty(rest))))
        return TrainState(params=restored.params, **_with_empty(restored.train, rest))

    def restore_params(self, step: int, like, shardings):
        restored = self.manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(_abstract(like, shardings))))
        return restored.params

    def wait(self) -> None:
        """Blocks until the checkpoints being written are committed."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Waits for writes in flight, then releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
