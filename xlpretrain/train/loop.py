"""`train(config, workdir)`: the training loop. It knows the objective only through its interface
(`objectives/__init__.py`): a loss, the memory it carries, and how to summarize its metrics.

A run is resumable by construction: the batch of step s is `stream.batch_at(s)`, the dropout key of
step s is `fold_in(rng, s)`, and the checkpoint holds params, optimizer state, step, RNG and memory.
A SIGTERM (a preempted Cloud TPU or spot machine) ends the run after the step in progress, on every
host at the same step, with a checkpoint of that step.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import threading
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from xlpretrain import config as config_lib
from xlpretrain import parallel
from xlpretrain.errors import UserError
from xlpretrain.train import optim
from xlpretrain.train.checkpoint import Checkpoints, committed_steps
from xlpretrain.train.evaluate import Evaluator
from xlpretrain.train.experiment import CHECKPOINT_DIR, CONFIG_FILE, Experiment
from xlpretrain.train.logging import METRICS_FILE, WANDB_ID_FILE, MetricsLog, announce, final_test_line, progress


PARTIAL_WINDOW_FILE = "partial_window.json"


class Diverged(UserError):
    pass


class Preempted(UserError):
    exit_code = 128 + signal.SIGTERM


class _Preemption:
    """Whether a SIGTERM has arrived. With several processes, JAX's preemption sync point makes every
    process answer yes at the same step; a single process catches the signal itself."""

    def __init__(self):
        self.multihost, self.received, self.previous = jax.process_count() > 1, False, None
        if not self.multihost and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._receive)

    def _receive(self, signum, frame) -> None:
        self.received = True

    def reached(self, step: int) -> bool:
        return multihost_utils.reached_preemption_sync_point(step) if self.multihost else self.received

    def close(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def prepare_workdir(workdir: Path, config: ml_collections.ConfigDict, restart: bool) -> None:
    """Refuses a workdir whose checkpoints belong to another model or data, unless `restart`, which
    moves everything the old run wrote into `previous/<time>/` instead of deleting it; refuses a
    train.steps below the latest checkpoint, whose test line would name the wrong step."""
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"--workdir {workdir} is a file; pass a directory (it is created if missing)")
    workdir.mkdir(parents=True, exist_ok=True)
    saved = workdir / CONFIG_FILE
    steps = committed_steps(workdir / CHECKPOINT_DIR)
    has_checkpoint = bool(steps)
    if saved.is_file() and has_checkpoint and not restart:
        old, new = config_lib.signature(config_lib.from_json(saved.read_text())), config_lib.signature(config)
        if old != new:
            diff = next(f"{k}: {old.get(k, '(absent)')} -> {new.get(k, '(absent)')}"
                        for k in sorted(old.keys() | new.keys()) if k not in old or k not in new or old[k] != new[k])
            raise UserError(f"workdir {workdir} holds a checkpoint of a different model or data ({diff[:200]}); "
                            f"pass --restart to start over (the old run is kept in {workdir}/previous/) "
                            f"or choose another --workdir")
    if has_checkpoint and not restart and max(steps) > config.train.steps:
        raise UserError(f"workdir {workdir} holds a checkpoint of step {max(steps)}, past train.steps="
                        f"{config.train.steps}; raise train.steps, pass --restart or choose another --workdir")
    if restart:
        previous = workdir / "previous" / time.strftime("%Y%m%d-%H%M%S")
        for name in (CONFIG_FILE, METRICS_FILE, CHECKPOINT_DIR, "tensorboard", WANDB_ID_FILE, PARTIAL_WINDOW_FILE):
            if (workdir / name).exists():
                previous.mkdir(parents=True, exist_ok=True)
                shutil.move(str(workdir / name), str(previous / name))


class _Window:
    """The train metrics of the steps since the last log line. Values stay on the device until a
    line is written or a checkpoint is about to be saved; both first check every loss is finite.
    A line reports the objective's summary of the window's pooled (sum, weight) metrics. A SIGTERM
    between two lines leaves the window's pool in PARTIAL_WINDOW_FILE, so that the resumed run's
    next line pools the same steps as an uninterrupted run's."""

    def __init__(self, tokens_per_step: int, objective, checkpoints: Checkpoints, workdir: Path):
        self.tokens_per_step, self.objective = tokens_per_step, objective
        self.checkpoints, self.workdir = checkpoints, workdir
        self.pending, self.totals, self.norms, self.carried = [], None, [], None
        self.restart_clock()

    def save_partial(self, step: int) -> None:
        """Writes the pool of the steps since the last line, which `step` ends (after `check`)."""
        leaves = None if self.totals is None else [float(x) for x in jax.tree.leaves(self.totals)]
        (self.workdir / PARTIAL_WINDOW_FILE).write_text(json.dumps({"step": step, "totals": leaves,
                                                                    "norms": self.norms}))

    def resume(self, step: int) -> None:
        """Takes up the pool save_partial wrote at `step`, if it did."""
        path = self.workdir / PARTIAL_WINDOW_FILE
        saved = json.loads(path.read_text()) if path.is_file() else {}
        if saved.get("step") == step:
            self.carried, self.norms = saved["totals"], saved["norms"]

    def restart_clock(self) -> None:
        self.start, self.steps = time.perf_counter(), 0

    def add(self, step: int, metrics) -> None:
        """Adds the metrics of a step just dispatched, once the step before it has run."""
        parallel.wait_one_step_behind(self.pending)
        self.pending.append((step, metrics))
        self.steps += 1

    def check(self) -> None:
        """Fetches the pending metrics; raises Diverged at the first non-finite loss."""
        for step, metrics in jax.device_get(self.pending):
            loss = float(metrics["loss"])
            if not math.isfinite(loss):
                last = self.checkpoints.latest_step()
                kept = ("no checkpoint was written before it" if last is None
                        else f"the last good checkpoint is step {last} in {self.workdir / CHECKPOINT_DIR}")
                raise Diverged(f"the loss became {loss} at step {step}; training stopped and {kept}; "
                               f"lower train.lr or raise train.warmup_steps, then resume")
            pairs = jax.tree.map(np.float64, metrics["objective"])
            if self.carried is not None:  # float64 through JSON unchanged: the same sums as without the stop
                self.totals = jax.tree.unflatten(jax.tree.structure(pairs), map(np.float64, self.carried))
                self.carried = None
            self.totals = pairs if self.totals is None else jax.tree.map(np.add, self.totals, pairs)
            self.norms.append(float(metrics["grad_norm"]))
        self.pending = []

    def line(self, step: int, lr: float) -> dict:
        """The train line for the window ending at `step`, which then starts a new window."""
        self.check()
        line = {"step": step, "split": "train", **self.objective.summarize(self.totals),
                "tokens_per_sec": self.steps * self.tokens_per_step / (time.perf_counter() - self.start),
                "lr": lr, "grad_norm": float(np.mean(self.norms))}
        self.totals, self.norms = None, []
        return line


def train(config: ml_collections.ConfigDict, workdir: str | Path, restart: bool = False) -> dict:
    """Trains (or resumes) the run in `workdir`; returns the final test metrics."""
    workdir = Path(workdir)
    exp = Experiment(config)
    config = exp.config
    for split in ("valid", "test"):  # a split too short for eval.batch_size fails now, not after training
        exp.stream(split, "eval")
    if jax.process_index() == 0:
        prepare_workdir(workdir, config, restart)
        (workdir / CONFIG_FILE).write_text(config_lib.to_json(config))
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("workdir prepared")

    train_cfg = config.train
    checkpoints = Checkpoints(workdir / CHECKPOINT_DIR, train_cfg.keep_checkpoints)
    log = MetricsLog(workdir, config)
    try:
        with exp.context():
            return _run(exp, checkpoints, log, workdir)
    finally:
        checkpoints.close()
        log.close()


def _run(exp: Experiment, checkpoints: Checkpoints, log: MetricsLog, workdir: Path) -> dict:
    train_cfg = exp.config.train
    latest = checkpoints.latest_step()  # 0 after `convert import`, whose weights the run starts from
    start = latest or 0
    log.resume(start)
    finished = final_test_line(workdir, train_cfg.steps)
    if start >= train_cfg.steps and finished:
        announce(f"xlpretrain: the run in {workdir} is complete at step {start}; raise train.steps to go on")
        return finished
    state = exp.init_state() if latest is None else checkpoints.restore(latest, exp.state_shapes, exp.state_shardings)
    stream, evaluator, step_fn = exp.stream("train"), Evaluator(exp), exp.train_step()
    schedule = optim.learning_rate(train_cfg)
    announce(f"xlpretrain: {exp.param_count():,} parameters, {stream.summary()}, "
             f"{'starting' if latest is None else f'resuming at step {latest}'} in {workdir}")
    if jax.process_count() > 1:
        part, parts = parallel.process_rows(exp.batch_sharding, train_cfg.batch_size)
        print(f"xlpretrain: process {jax.process_index()} of {jax.process_count()} reads part {part} of {parts} "
              f"of each batch", flush=True)

    window = _Window(exp.tokens_per_step, exp.objective, checkpoints, workdir)
    window.resume(start)
    bar, preemption = progress(train_cfg.steps, start, "train"), _Preemption()
    try:
        for step in range(start, train_cfg.steps):
            state, metrics = step_fn(state, exp.to_global(stream.batch_at(step)))
            done = step + 1
            window.add(done, metrics)
            bar.update()
            at_end = done == train_cfg.steps

            logged = done % train_cfg.log_every == 0 or at_end
            if logged:
                line = exp.report(window.line(done, float(schedule(step))), "train")
                log.write(line)
                bar.set_postfix(loss=f"{line['loss']:.3f}", tok_s=f"{line['tokens_per_sec']:.0f}")
            valid_loss = None
            if done % train_cfg.eval_every == 0 or at_end:
                summary = evaluator.evaluate(state.params, "valid")
                valid_loss = summary["loss"]
                log.write({"step": done, "split": "valid", **summary})
                shown = ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if isinstance(v, float))
                bar.write(f"step {done}: valid {shown}")
            if done % train_cfg.checkpoint_every == 0 or at_end:
                window.check()
                checkpoints.save(state, valid_loss)
            if logged:  # the next window's throughput excludes evaluation and checkpointing
                window.restart_clock()
            if preemption.reached(done) and not at_end:
                window.check()
                if jax.process_index() == 0:
                    window.save_partial(done)
                if checkpoints.latest_step() != done:
                    checkpoints.save(state, valid_loss)
                checkpoints.wait()
                raise Preempted(f"stopped by SIGTERM after step {done}, saved in {workdir / CHECKPOINT_DIR}; "
                                f"run the same command again to resume from step {done}")
    finally:
        bar.close()
        preemption.close()

    checkpoints.wait()
    best = checkpoints.best_step()
    params = state.params
    if best is not None and best != int(state.step):
        params = checkpoints.restore_params(best, exp.state_shapes.params, exp.state_shardings.params)
    line = {"step": train_cfg.steps, "split": "test", **evaluator.evaluate(params, "test"), "checkpoint_step": best}
    log.write(line)
    announce(json.dumps(line))
    return line
