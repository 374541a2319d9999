"""The evaluation protocol: the objective's metrics pooled over an entire split.

Causal LM (Transformer-XL's protocol): the split is laid out as `eval.batch_size` contiguous
columns (10, as the official `eval.py`) and read in windows of `eval.tgt_len` with the memory
carried from an empty start, under the eval `mem_len`, `clamp_len` and `same_length`. Every token
of a column but its first is predicted once. Encoder objectives: every example of the split once,
corrupted with keys drawn from a fixed seed and the batch index, so that every evaluation of every
checkpoint sees the same masks.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jax
import ml_collections
import numpy as np

from xlpretrain import config as config_lib
from xlpretrain import objectives, parallel
from xlpretrain.errors import UserError
from xlpretrain.train.checkpoint import Checkpoints
from xlpretrain.train.experiment import CHECKPOINT_DIR, CONFIG_FILE, Experiment
from xlpretrain.train.logging import MetricsLog, announce, progress


class Evaluator:
    """Compiles the eval step once; `evaluate(params, split)` runs the protocol over one split."""

    def __init__(self, exp: Experiment):
        self.exp = exp
        self.config = config_lib.for_eval(exp.config)
        self.objective = objectives.build(self.config)
        self.memory_shardings = parallel.shardings(exp.mesh, exp.rules, self.objective.memory_axes)
        objective, key = self.objective, jax.random.PRNGKey(0)

        def step(params, batch, memory, index):
            _, (memory, metrics) = objective.loss(params, batch, memory, jax.random.fold_in(key, index), False)
            return memory, metrics

        self.step = jax.jit(step, in_shardings=(exp.state_shardings.params, exp.batch_sharding, self.memory_shardings,
                                                None),
                            out_shardings=(self.memory_shardings, None), donate_argnums=2)

    def evaluate(self, params, split: str) -> dict:
        """The metrics line of `split` ("valid" or "test")."""
        stream = self.exp.stream(split, "eval")
        memory = jax.device_put(self.objective.init_memory(self.config.eval.batch_size), self.memory_shardings)
        per_batch = []
        bar = progress(stream.evaluation_steps(), 0, f"eval {split}", leave=False)
        for index, batch in enumerate(stream.evaluation_batches()):
            memory, metrics = self.step(params, self.exp.to_global(batch), memory, index)
            parallel.wait_one_step_behind(per_batch)
            per_batch.append(metrics)
            bar.update()
        bar.close()
        # Pool the per-batch sums on the host, in float64.
        totals = jax.tree.map(lambda *xs: np.sum(np.asarray(xs, np.float64)), *jax.device_get(per_batch))
        return self.exp.report(self.objective.summarize(totals), split)


def evaluate_release(hf_dir: str, config: ml_collections.ConfigDict, split: str) -> dict:
    """`xlpretrain eval --hf DIR --config PATH`: the evaluation protocol of `config` run on the
    released Transformer-XL weights in DIR (HuggingFace `TransfoXLLMHeadModel` + `vocab.pkl`),
    the corpus read with the release's word ids; prints and returns the line."""
    from xlpretrain.convert.checkpoints import transfo_xl_params, with_release_vocabulary

    exp = Experiment(with_release_vocabulary(config, hf_dir))
    params = transfo_xl_params(hf_dir, exp)
    with exp.context():
        params = jax.tree.map(lambda x, sharding: jax.device_put(np.asarray(x, np.float32), sharding),
                              params, exp.state_shardings.params)
        line = {"hf": str(hf_dir), "split": split, **Evaluator(exp).evaluate(params, split),
                "eval": exp.config.eval.to_dict()}
    announce(json.dumps(line))
    return line


def evaluate_workdir(workdir: str | Path, split: str, step: int | None, overrides: list[str]) -> dict:
    """`xlpretrain eval`: evaluates a run's checkpoint (the best-valid one unless `step` is given)
    under the run's config with `overrides`, appends the line to its metrics.jsonl and returns it."""
    workdir = Path(workdir)
    if not (workdir / CONFIG_FILE).is_file():
        raise UserError(f"{workdir} holds no {CONFIG_FILE}; pass the --workdir of a `xlpretrain train` run")
    saved = config_lib.from_json((workdir / CONFIG_FILE).read_text())
    config = config_lib.override(copy.deepcopy(saved), overrides)
    trained, asked = config_lib.signature(saved), config_lib.signature(config)
    changed = [key for key in sorted(asked) if key.startswith("model.") and asked[key] != trained.get(key)]
    if changed:
        raise UserError(f"eval restores the run's weights, so the model stays as trained: drop --config.{changed[0]} "
                        f"(the evaluation's settings are eval.*)")
    exp = Experiment(config)
    checkpoints = Checkpoints(workdir / CHECKPOINT_DIR, exp.config.train.keep_checkpoints)
    try:
        step = checkpoints.best_step() if step is None else step
        if step is None or step not in checkpoints.all_steps():
            raise UserError(f"no checkpoint {'' if step is None else f'at step {step} '}in {workdir / CHECKPOINT_DIR}; "
                            f"steps available: {checkpoints.all_steps()}")
        with exp.context():
            params = checkpoints.restore_params(step, exp.state_shapes.params, exp.state_shardings.params)
            line = {"step": step, "split": split, **Evaluator(exp).evaluate(params, split),
                    "eval": exp.config.eval.to_dict()}
    finally:
        checkpoints.close()
    log = MetricsLog(workdir, exp.config, wandb=False)
    log.write(line)
    log.close()
    announce(json.dumps(line))
    return line
