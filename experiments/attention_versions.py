"""Times two versions of `xlpretrain/models/attention.py` against each other: one relative
attention layer's forward and backward (gradients of its parameters and input) at the small
benchmark model's shapes (batch 8, segment 128, memory 128, d_model 256, 8 heads of 32), the two
compiled programs alternating in one process so that both see the same load.

    python experiments/attention_versions.py xlpretrain/models/attention.py /tmp/attention_rewrite.py [--pairs 30]

Prints each version's loss and the largest gradient difference (a rewrite must agree to float32
rounding), each one's median milliseconds and the median over pairs of the second's time over the first's.
"""

import argparse
import importlib.util
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from xlpretrain.cli import keep_freed_memory

BATCH, SEGMENT, MEMORY, D_MODEL, HEADS, D_HEAD = 8, 128, 128, 256, 8, 32


def load(path: str, name: str):
    """The module in the file at `path`, imported as `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # flax's dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def layer_step(module):
    """The jitted (loss, gradients) of one layer of `module`'s Attention, and its arguments."""
    rng = np.random.default_rng(0)
    keys = SEGMENT + MEMORY
    h, memory, target = (jnp.asarray(rng.normal(size=(BATCH, length, D_MODEL)), jnp.float32)
                         for length in (SEGMENT, MEMORY, SEGMENT))
    visible = jnp.asarray(np.arange(keys)[None] <= np.arange(SEGMENT)[:, None] + MEMORY)[None]
    relative = module.RelativeTerms(jnp.asarray(rng.normal(size=(1, keys, D_MODEL)), jnp.float32),
                                    jnp.full((HEADS, D_HEAD), 0.1), jnp.full((HEADS, D_HEAD), -0.1))
    attention = module.Attention(HEADS, D_HEAD, dropatt=0.0, init_std=0.02)
    params = attention.init(jax.random.PRNGKey(0), h, memory, visible, True, relative)

    def loss(params, h):
        out, _ = attention.apply(params, h, memory, visible, True, relative)
        return jnp.sum(out * target)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), (params, h)


def main():
    """Times the two files' layers side by side and prints what the module's docstring says."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--pairs", type=int, default=30)
    args = parser.parse_args()
    keep_freed_memory()  # as `xlpretrain` does: the steps' temporaries are not faulted in afresh
    steps = [layer_step(load(path, f"attention_version_{i}")) for i, path in enumerate((args.first, args.second))]
    results = [jax.block_until_ready(step(*arguments)) for step, arguments in steps]
    difference = max(float(jnp.abs(a - b).max()) for a, b in zip(*(jax.tree.leaves(r[1]) for r in results)))
    print(f"loss {float(results[0][0]):.6f} and {float(results[1][0]):.6f}; largest gradient difference {difference:.2e}")
    seconds = np.zeros((args.pairs, 2))
    for step, arguments in steps * 2:  # untimed
        jax.block_until_ready(step(*arguments))
    for pair in range(args.pairs):
        for i, (step, arguments) in enumerate(steps):
            start = time.perf_counter()
            jax.block_until_ready(step(*arguments))
            seconds[pair, i] = time.perf_counter() - start
    first, second = 1000 * np.median(seconds, axis=0)
    print(f"{first:.2f} ms and {second:.2f} ms (medians of {args.pairs}); the second takes "
          f"{np.median(seconds[:, 1] / seconds[:, 0]):.3f} times as long (median over pairs)")


if __name__ == "__main__":
    main()
