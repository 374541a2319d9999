"""Runs across processes and meshes, end to end through `xlpretrain train`: the reference trains on
one process of 8 CPU devices (fsdp=8). Two processes of 4 devices each (data=2, fsdp=2, tensor=2),
joined by `jax.distributed` over loopback with gloo collectives, each reading its half of every
batch, are stopped by a SIGTERM to one of them at a random step, then resumed; and the reference's
checkpoint is restored onto data=2, tensor=4. Both must log the reference's losses. And a run on 8
CPU devices that queues its steps (no log line until the end, a long evaluation) finishes."""

import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, cli_env, read_lines, run_cli

STEPS, EVERY = 40, 10
RUN = [
    "--config=configs/quickstart.py",
    "--config.data.quickstart.train_tokens=20000", "--config.data.quickstart.valid_tokens=500",
    "--config.data.quickstart.test_tokens=500",
    "--config.model.n_layer=1", "--config.model.d_model=32", "--config.model.n_head=8", "--config.model.d_head=4",
    "--config.model.d_inner=64", "--config.model.dropout=0.1", "--config.model.mem_len=8",
    "--config.train.batch_size=8", "--config.train.tgt_len=8", f"--config.train.steps={STEPS}",
    "--config.train.warmup_steps=2", "--config.train.log_every=1", f"--config.train.eval_every={STEPS}",
    f"--config.train.checkpoint_every={EVERY}", "--config.train.keep_checkpoints=10",
    "--config.eval.tgt_len=8", "--config.eval.mem_len=8", "--config.eval.batch_size=8",
]


def _mesh(data: int, fsdp: int, tensor: int) -> list[str]:
    return [f"--config.mesh.data={data}", f"--config.mesh.fsdp={fsdp}", f"--config.mesh.tensor={tensor}"]


def _assert_same_losses(lines: list[dict], reference: list[dict]) -> None:
    assert [(x["step"], x["split"]) for x in lines] == [(x["step"], x["split"]) for x in reference]
    np.testing.assert_allclose([x["loss"] for x in lines], [x["loss"] for x in reference], rtol=1e-5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir):
    workdir = tmp_path_factory.mktemp("reference")
    run_cli(["train", "--workdir", str(workdir)] + RUN + _mesh(1, 8, 1), cache_dir, devices=8)
    return workdir


def _two_processes(workdir, cache_dir) -> list[subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "xlpretrain.cli", "train", "--workdir", str(workdir)] + RUN + _mesh(2, 2, 2)
    return [subprocess.Popen(command + ["--coordinator", f"localhost:{port}", "--num-processes", "2",
                                        "--process-id", str(i)], cwd=REPO, env=cli_env(cache_dir, 4),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]


def _train_lines(workdir) -> int:
    path = workdir / "metrics.jsonl"
    return sum('"split": "train"' in line for line in path.read_text().splitlines()) if path.is_file() else 0


@pytest.mark.slow
def test_two_processes_stopped_by_sigterm_and_resumed_log_the_losses_of_one(reference, tmp_path, cache_dir):
    stop_after = random.randint(2, STEPS // 2)
    processes = _two_processes(tmp_path, cache_dir)
    deadline = time.monotonic() + 300
    while _train_lines(tmp_path) < stop_after and time.monotonic() < deadline and processes[0].poll() is None:
        time.sleep(0.02)
    processes[1].send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=300) for p in processes]
    for i, (p, (out, err)) in enumerate(zip(processes, outputs)):
        assert p.returncode == 128 + signal.SIGTERM, f"process {i} after SIGTERM at {stop_after} steps:\n{err[-3000:]}"
        assert f"process {i} of 2 reads part {i} of 2 of each batch" in out
    stopped = _train_lines(tmp_path)
    assert stopped < STEPS and f"stopped by SIGTERM after step {stopped}" in outputs[0][1]
    assert (tmp_path / "checkpoints" / str(stopped)).is_dir()

    processes = _two_processes(tmp_path, cache_dir)
    outputs = [p.communicate(timeout=300) for p in processes]
    for i, (p, (out, err)) in enumerate(zip(processes, outputs)):
        assert p.returncode == 0, f"process {i} resuming at step {stopped}:\n{err[-3000:]}"
    assert f"resuming at step {stopped}" in outputs[0][0]
    _assert_same_losses(read_lines(tmp_path), read_lines(reference))


@pytest.mark.slow
def test_checkpoint_of_one_mesh_resumes_on_another(reference, tmp_path, cache_dir):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    for step in range(2 * EVERY + EVERY, STEPS + 1, EVERY):
        shutil.rmtree(workdir / "checkpoints" / str(step))
    result = run_cli(["train", "--workdir", str(workdir)] + RUN + _mesh(2, 1, 4), cache_dir, devices=8)
    assert f"resuming at step {2 * EVERY}" in result.stdout
    lines = read_lines(workdir)
    _assert_same_losses(lines, read_lines(reference))
    assert json.loads((workdir / "config.json").read_text())["mesh"] == {"data": 2, "fsdp": 1, "tensor": 4}


@pytest.mark.slow
def test_steps_never_queue_deep_enough_to_deadlock_cpu_devices(tmp_path, cache_dir):
    """300 train steps without a log line between them and 625 eval steps: dispatched all at once,
    XLA's 8 CPU devices (one thread pool) deadlocked in a collective and aborted the run (2026-12-02)."""
    queued = {f"--config.train.{key}": 300 for key in ("steps", "log_every", "eval_every", "checkpoint_every")}
    queued["--config.data.quickstart.valid_tokens"] = 40000
    args = [arg for arg in RUN if arg.split("=")[0] not in queued] + [f"{k}={v}" for k, v in queued.items()]
    result = run_cli(["train", "--workdir", str(tmp_path)] + args + _mesh(8, 1, 1), cache_dir, devices=8,
                     check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [line["split"] for line in read_lines(tmp_path)] == ["train", "valid", "test"]
