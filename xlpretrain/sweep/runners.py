"""`xlpretrain sweep FILE --workdir ROOT`: runs a sweep's trials, each an `xlpretrain train` process.

Trial NAME trains in ROOT/NAME; its console output goes to ROOT/NAME/train.log and its state to
ROOT/NAME/trial.json (status running, done, failed or stopped, with the error of a failure). A
trial is finished when its metrics.jsonl holds the test line of its last step; running the sweep
again skips finished trials and resumes the others from their checkpoints (`xlpretrain train`
resumes by itself), and refuses a finished trial whose settings the sweep file has since changed.
A failing trial is recorded and the others go on.

Runners: `local` runs --parallel trials at once on this machine, splitting its CPU cores and GPUs
between them; `ray` submits each trial as a Ray task to a running Ray cluster whose workers see the
same files; `print` prints one `xlpretrain train` command per unfinished trial, for a scheduler.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from xlpretrain import config as config_lib
from xlpretrain.errors import UserError
from xlpretrain.sweep.spec import Sweep, Trial
from xlpretrain.train.experiment import CONFIG_FILE
from xlpretrain.train.logging import final_test_line

SWEEP_FILE = "sweep.json"
STATUS_FILE = "trial.json"
LOG_FILE = "train.log"
RUNNERS = ("local", "ray", "print")


def read_status(workdir: Path) -> dict:
    path = Path(workdir) / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _error(log: Path, returncode: int) -> str:
    """The reason a trial failed: the command's one-line error, else the log's last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("xlpretrain: error:")]
    if errors:
        return errors[-1][len("xlpretrain: error:"):].strip()[:500]
    if returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    return (lines[-1] if lines else f"exit status {returncode}")[:500]


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def run_trial(arguments: list[str], workdir: str, overrides: dict, env: dict | None = None,
              started: "queue.Queue | None" = None) -> dict:
    """Runs `xlpretrain ARGUMENTS` for the trial in `workdir` and records how it ended in trial.json
    with its `overrides` (which a report shows for a trial that failed before writing config.json).

    The process gets its own session, so that a Ctrl-C of the sweep reaches it as the SIGTERM this
    function sends: the run then saves a checkpoint of its current step and the trial is `stopped`.
    `started` receives the process (the local runner stops them all on Ctrl-C or SIGTERM).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    record = read_status(workdir)
    record.update(overrides=overrides, command=shlex.join(["xlpretrain"] + arguments), status="running", error=None,
                  attempts=record.get("attempts", 0) + 1, started=time.strftime("%Y-%m-%d %H:%M:%S"))
    (workdir / STATUS_FILE).write_text(json.dumps(record, indent=2))
    start = time.perf_counter()
    child_env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    with open(workdir / LOG_FILE, "a") as log:
        log.write(f"\n$ {record['command']}\n")
        log.flush()
        process = subprocess.Popen([sys.executable, "-m", "xlpretrain.cli"] + arguments, stdout=log,
                                   stderr=subprocess.STDOUT, env=child_env, start_new_session=True)
        if started is not None:
            started.put(process)
        try:
            returncode = process.wait()
        except KeyboardInterrupt:  # a cancelled Ray task
            process.terminate()
            returncode = process.wait()
    record.update(returncode=returncode, seconds=round(time.perf_counter() - start, 1))
    if returncode == 0:
        record.update(status="done")
    elif returncode == 128 + signal.SIGTERM:
        record.update(status="stopped", error="stopped by SIGTERM with a checkpoint; the next run resumes it")
    else:
        record.update(status="failed", error=_error(workdir / LOG_FILE, returncode))
    (workdir / STATUS_FILE).write_text(json.dumps(record, indent=2))
    return record


class _Progress:
    """One console line per trial that ends, with the sweep's ETA from the trials timed so far."""

    def __init__(self, total: int, skipped: int, parallel: int):
        self.total, self.ended, self.parallel = total, skipped, parallel
        self.seconds, self.failed = [], []
        self.start = time.perf_counter()

    def __call__(self, trial: Trial, record: dict) -> None:
        self.ended += 1
        self.seconds.append(record["seconds"])
        if record["status"] == "failed":
            self.failed.append(trial.name)
        left = self.total - self.ended
        eta = (f", about {duration(sum(self.seconds) / len(self.seconds) * left / self.parallel)} to go"
               if left else "")
        outcome = record["status"] + (f": {record['error']}" if record["error"] else "")
        print(f"[{self.ended}/{self.total}] {trial.name}: {outcome} ({duration(record['seconds'])}){eta}",
              flush=True)

    def summary(self) -> str:
        failed = f"; failed: {', '.join(self.failed)}" if self.failed else ""
        return f"sweep: {self.ended} of {self.total} trials ended in {duration(time.perf_counter() - self.start)}{failed}"


def _device_slots(parallel: int) -> list[dict]:
    """What each of `parallel` concurrent trials gets: an equal share of this process's CPU cores
    ("cores", the trial process's CPU affinity) and of the GPUs (its CUDA_VISIBLE_DEVICES)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < parallel:
        raise UserError(f"--parallel {parallel} is more trials than this machine's {len(cores)} CPU cores")
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpus is None and shutil.which("nvidia-smi"):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        gpus = ",".join(str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU"))
    gpus = [g for g in (gpus or "").split(",") if g.strip()]
    if gpus and len(gpus) < parallel:
        raise UserError(f"--parallel {parallel} is more trials than this machine's {len(gpus)} GPUs")
    slots = []
    for i in range(parallel):
        env = {"cores": cores[i * len(cores) // parallel:(i + 1) * len(cores) // parallel]}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[i * len(gpus) // parallel:(i + 1) * len(gpus) // parallel])
        slots.append(env)
    return slots


def _run_local(jobs: list[tuple[Trial, list[str], Path]], parallel: int, progress: _Progress) -> None:
    slots, processes = queue.Queue(), queue.Queue()
    for slot in _device_slots(parallel):
        slots.put(slot)

    def run(trial: Trial, arguments: list[str], workdir: Path) -> dict:
        slot = slots.get()
        try:
            os.sched_setaffinity(0, slot["cores"])  # this thread's; the trial's process inherits it
            env = dict(os.environ, **{k: v for k, v in slot.items() if k != "cores"})
            return run_trial(arguments, str(workdir), trial.overrides, env, processes)
        finally:
            slots.put(slot)

    def stop(signum, frame):  # a SIGTERM (a scheduler, a preempted VM) stops the sweep as a Ctrl-C does
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        futures = {pool.submit(run, trial, arguments, workdir): trial for trial, arguments, workdir in jobs}
        try:
            for future in concurrent.futures.as_completed(futures):
                progress(futures[future], future.result())
        except KeyboardInterrupt:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            for future in futures:
                future.cancel()
            while not processes.empty():
                process = processes.get()
                if process.poll() is None:
                    process.terminate()
            print("sweep: stopping; the running trials save a checkpoint and resume on the next run", flush=True)
            pool.shutdown(wait=True)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)


def _run_ray(jobs: list[tuple[Trial, list[str], Path]], address: str, cpus: float, gpus: float,
             progress: _Progress) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("--runner ray needs Ray: pip install 'xlpretrain[ray]'") from None
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    except ConnectionError as e:
        raise UserError(f"no Ray cluster at {address} ({e}); start one with `ray start --head` "
                        f"or pass --ray-address HOST:PORT") from None
    try:
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(run_trial)
        futures = {task.remote(arguments, str(workdir), trial.overrides): trial for trial, arguments, workdir in jobs}
        remaining = list(futures)
        try:
            while remaining:
                ready, remaining = ray.wait(remaining, num_returns=1)
                progress(futures[ready[0]], ray.get(ready[0]))
        except KeyboardInterrupt:
            for future in remaining:
                ray.cancel(future)
            raise
    finally:
        ray.shutdown()


def run(sweep: Sweep, root: str | Path, runner: str, parallel: int = 1, ray_address: str = "auto",
        cpus_per_trial: float = 1, gpus_per_trial: float = 0) -> int:
    """Runs the sweep's unfinished trials under `root`; returns how many failed."""
    if runner not in RUNNERS:
        raise UserError(f"unknown runner {runner!r}: {', '.join(RUNNERS)}")
    if parallel < 1:
        raise UserError(f"--parallel must be >= 1, got {parallel}")
    root = Path(root)
    workdirs = {trial.name: root / trial.name for trial in sweep.trials}
    pending = [trial for trial in sweep.trials
               if final_test_line(workdirs[trial.name], sweep.config(trial).train.steps) is None]
    for trial in sweep.trials:
        if trial not in pending:  # finished, but perhaps under settings the sweep file has changed since
            saved = config_lib.from_json((workdirs[trial.name] / CONFIG_FILE).read_text())
            changed = config_lib.changed_settings(saved, sweep.config(trial))
            if changed:
                raise UserError(f"trial {trial.name} finished in {workdirs[trial.name]} with other settings than "
                                f"the sweep file's now ({changed[0]}); move that folder away to run it again, or "
                                f"use another --workdir")
    if runner == "print":
        for trial in sweep.trials:
            print(trial.command(sweep.base, workdirs[trial.name]) if trial in pending
                  else f"# {trial.name}: finished")
        return 0
    root.mkdir(parents=True, exist_ok=True)
    (root / SWEEP_FILE).write_text(json.dumps(
        {"file": str(sweep.file), "base": sweep.base,
         "trials": [{"name": t.name, "overrides": t.overrides} for t in sweep.trials]}, indent=2))
    skipped = len(sweep.trials) - len(pending)
    print(f"sweep: {len(sweep.trials)} trials in {root}, {skipped} finished, {len(pending)} to run"
          + (f", {parallel} at a time" if runner == "local" and pending else ""), flush=True)
    if not pending:
        return 0
    progress = _Progress(len(sweep.trials), skipped, parallel if runner == "local" else len(pending) or 1)
    if runner == "ray":  # absolute paths: a Ray worker runs in a folder of its own
        path, sep, arg = sweep.base.partition(":")
        base = f"{Path(path).resolve()}{sep}{arg}"
        jobs = [(t, t.arguments(base, workdirs[t.name].resolve()), workdirs[t.name].resolve()) for t in pending]
        _run_ray(jobs, ray_address, cpus_per_trial, gpus_per_trial, progress)
    elif runner == "local":
        jobs = [(t, t.arguments(sweep.base, workdirs[t.name]), workdirs[t.name]) for t in pending]
        _run_local(jobs, parallel, progress)
    print(progress.summary(), flush=True)
    return len(progress.failed)
