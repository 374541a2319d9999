"""Sweeps: trial algebra and names, `xlpretrain sweep` through the local and the Ray runner (failure
recorded, finished trials skipped, unfinished ones resumed), `xlpretrain report` and `plot`."""

import csv
import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO, cli_env, comparable, read_lines, run_cli
from xlpretrain.errors import UserError
from xlpretrain.sweep import choice, loguniform, product, sample, spec, zipped
from xlpretrain.sweep import report, runners
from xlpretrain.sweep.report import find_runs, table
from xlpretrain.train.logging import keep_lines_up_to

# Four tiny trials: three (no memory, and memory with two seeds) that train, and one whose warm-up
# is longer than the run, which the config refuses when the trial starts.
SWEEP = """
from xlpretrain.sweep import product
BASE = "configs/quickstart.py"
FIXED = {"data.quickstart.train_tokens": 20000, "data.quickstart.valid_tokens": 2000,
          "data.quickstart.test_tokens": 2000, "model.n_layer": 1, "model.d_model": 32, "model.n_head": 2,
          "model.d_head": 16, "model.d_inner": 64, "train.batch_size": 4, "train.tgt_len": 8,
          "train.steps": 8, "train.log_every": 2, "train.eval_every": 4, "train.checkpoint_every": 4,
          "eval.tgt_len": 8, "eval.batch_size": 2}
TRIALS = product({"model.mem_len": [0, 8, 8], "eval.mem_len": [0, 8, 8], "seed": [0, 0, 1]},
                 {"train.warmup_steps": [2]}) + [{"train.warmup_steps": 50}]
"""
GOOD = ["mem_len=0", "mem_len=8"]


def test_trial_algebra():
    assert product({"a": [1, 2]}, {"b": [3, 4]}) == [{"a": 1, "b": 3}, {"a": 1, "b": 4}, {"a": 2, "b": 3},
                                                     {"a": 2, "b": 4}]
    assert product({"a": [1, 2], "b": [3, 4]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
    assert zipped({"a": [1, 2]}, [{"b": 3}, {"b": 4}]) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
    drawn = sample(20, {"train.lr": loguniform(1e-4, 1e-2), "model.mem_len": choice([0, 64])}, seed=3)
    assert drawn == sample(20, {"train.lr": loguniform(1e-4, 1e-2), "model.mem_len": choice([0, 64])}, seed=3)
    assert all(1e-4 <= t["train.lr"] <= 1e-2 and t["model.mem_len"] in (0, 64) for t in drawn)
    assert {t["model.mem_len"] for t in drawn} == {0, 64} and len({t["train.lr"] for t in drawn}) == 20
    assert all(len(f"{t['train.lr']:.10g}".lstrip("0.").rstrip("0")) <= 3 for t in drawn)  # 3 significant digits
    with pytest.raises(UserError, match="as many trials"):
        zipped({"a": [1, 2]}, {"b": [3]})
    with pytest.raises(UserError, match="set by two"):
        product({"a": [1]}, {"a": [2]})


def test_trial_names_are_the_overrides_with_the_shortest_unique_keys():
    keys = ["model.mem_len", "eval.mem_len", "train.lr", "seed", "data.dir"]
    trial = {"model.mem_len": 32, "eval.mem_len": 32, "train.lr": 0.00025, "seed": 1, "data.dir": "/a b/c"}
    assert spec.trial_name(trial, keys) == "model.mem_len=32,eval.mem_len=32,lr=0.00025,seed=1,dir=-a-b-c"
    assert spec.trial_name({"seed": 0}, keys) == "seed=0"
    assert spec.trial_name({"seed": 0, "data.quickstart.seed": 1}, ["seed", "data.quickstart.seed"]) == \
        "seed=0,quickstart.seed=1"  # a key that ends another keeps its whole name
    long = spec.trial_name({"data.dir": "x" * 300}, keys)
    assert len(long) <= 120 and long != spec.trial_name({"data.dir": "x" * 299}, keys)


def test_a_run_outside_a_sweep_is_done_with_the_test_line_of_its_last_step():
    """`xlpretrain eval --split test` of an unfinished run also logs a test line, at an earlier step."""
    evaluated = [{"step": 4, "split": "train"}, {"step": 4, "split": "test"}]
    assert report.Run("r", {"train.steps": 10}, evaluated, {}).state() == "unfinished"
    assert report.Run("r", {"train.steps": 4}, evaluated, {}).state() == "done"


def test_sweep_files_are_checked_before_anything_runs(tmp_path):
    def load(text):
        file = tmp_path / "sweep.py"
        file.write_text(textwrap.dedent(text))
        return spec.load(file)

    sweep = load("""
        BASE = "configs/quickstart.py"
        FIXED = {"train.steps": 10}
        TRIALS = [{"model.mem_len": 0, "train.lr": 0.001}, {"model.mem_len": 64, "train.lr": 0.001}]
    """)
    assert [t.name for t in sweep.trials] == ["mem_len=0,lr=0.001", "mem_len=64,lr=0.001"]
    config = sweep.config(sweep.trials[1])
    assert (config.model.mem_len, config.train.lr, config.train.steps) == (64, 0.001, 10)
    assert sweep.trials[1].command(sweep.base, Path("runs/x")).endswith(
        "--config.train.steps=10 --config.model.mem_len=64 --config.train.lr=0.001")
    numpy = load("""
        import numpy as np
        BASE = "configs/quickstart.py"
        TRIALS = {"model.mem_len": np.arange(0, 64, 32), "train.lr": np.logspace(-4, -3, 2)}
    """)
    assert [t.overrides for t in numpy.trials] == [{"model.mem_len": 0, "train.lr": 0.0001},
                                                   {"model.mem_len": 32, "train.lr": 0.001}]
    with pytest.raises(UserError, match="^--parallel must be >= 1, got 0$"):
        runners.run(sweep, tmp_path / "root", "local", parallel=0)
    assert not (tmp_path / "root").exists()
    for text, error in [
        ('BASE = "configs/quickstart.py"\nTRIALS = [{"model.memlen": 0}]', "unknown config key 'model.memlen'"),
        ('BASE = "configs/nothing.py"\nTRIALS = [{"seed": 0}]', "BASE config configs/nothing.py not found"),
        ('BASE = "configs/quickstart.py"\nTRIALS = [{"seed": 0}, {"seed": 0}]', "trials 0 and 1 are the same"),
        ('BASE = "configs/quickstart.py"\nFIXED = {"seed": 1}\nTRIALS = [{"seed": 0}]', "in both FIXED and TRIALS"),
        ('BASE = "configs/quickstart.py"', "defines no TRIALS"),
        ('BASE = "configs/quickstart.py"\nTRIALS = ["model.mem_len=0"]', "sweep trials are dicts"),
        ('BASE = "configs/quickstart.py"\nTRIALS = {"model.mem_len": 0}', "sweep key 'model.mem_len' takes a list"),
    ]:
        with pytest.raises(UserError, match=error):
            load(text)


def _sweep(tmp_path: Path) -> Path:
    file = tmp_path / "tiny_sweep.py"
    file.write_text(SWEEP)
    return file


def _check_outcome(root: Path):
    """Three trials finished at step 8, the fourth recorded with its error; the report's rows."""
    runs = {run.name: run for run in find_runs(root)}
    assert len(runs) == 4
    failed = runs.pop("warmup_steps=50")
    assert failed.status["status"] == "failed" and failed.status["returncode"] == 2
    assert "train.warmup_steps must be in [0, train.steps), got 50" in failed.status["error"]
    for name, run in runs.items():
        assert any(good in name for good in GOOD) and run.status["status"] == "done", run.status
        test = [line for line in run.lines if line["split"] == "test"]
        assert test[-1]["step"] == 8

    rows = table(find_runs(root), "valid/bits_per_token")
    assert list(rows[0]) == ["run", "eval.mem_len", "model.mem_len", "train.warmup_steps", "seed", "status", "steps",
                             "valid/bits_per_token final", "valid/bits_per_token best", "test/bits_per_token",
                             "true bits_per_token", "tokens/s", "wall seconds", "error"]
    bests = [row["valid/bits_per_token best"] for row in rows[:3]]
    assert bests == sorted(bests) and rows[-1]["run"] == "warmup_steps=50" and rows[-1]["status"] == "failed"
    return rows


@pytest.mark.slow
def test_a_sigterm_stops_the_sweep_and_its_trials_each_with_a_checkpoint(tmp_path, cache_dir):
    """Trials run in sessions of their own, so a signal to the sweep does not reach them by itself:
    a SIGTERM to the sweep stops both running trials as a Ctrl-C does, none left running."""
    file = tmp_path / "long_sweep.py"
    file.write_text(SWEEP.replace('"train.steps": 8', '"train.steps": 5000').split("TRIALS")[0]
                    + 'TRIALS = [{"seed": 0, "train.warmup_steps": 2}, {"seed": 1, "train.warmup_steps": 2}]\n')
    root = tmp_path / "root"
    sweep = subprocess.Popen([sys.executable, "-m", "xlpretrain.cli", "sweep", str(file), "--workdir", str(root),
                              "--parallel", "2"], cwd=REPO, env=cli_env(cache_dir), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sweep.poll() is None and len(list(root.glob("*/metrics.jsonl"))) < 2:
        time.sleep(0.1)
    sweep.send_signal(signal.SIGTERM)
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 130, err[-2000:]
    assert "sweep: stopping; the running trials save a checkpoint" in out
    trials = [path.parent for path in root.glob("*/trial.json")]
    assert len(trials) == 2
    for trial in trials:
        status = json.loads((trial / "trial.json").read_text())
        assert status["status"] == "stopped" and status["returncode"] == 128 + signal.SIGTERM, status
        assert "stopped by SIGTERM after step" in (trial / "train.log").read_text()


def test_local_sweep_records_a_failure_skips_finished_trials_and_resumes_a_cut_one(tmp_path, cache_dir, capsys, monkeypatch):
    root = tmp_path / "sweep"
    first = run_cli(["sweep", str(_sweep(tmp_path)), "--workdir", str(root), "--parallel", "2"], cache_dir,
                    check=False)
    assert first.returncode == 2 and "1 trial(s) failed" in first.stderr
    assert "4 trials in" in first.stdout and "[4/4]" in first.stdout and "to go" in first.stdout
    _check_outcome(root)

    # The sweep dies while a trial is between its checkpoints of steps 4 and 8: the next run of the
    # sweep skips the two finished trials, retries the failed one and resumes the cut one at step 4.
    cut = root / "model.mem_len=8,eval.mem_len=8,seed=1,warmup_steps=2"
    uninterrupted = read_lines(cut)
    shutil.rmtree(cut / "checkpoints" / "8")
    keep_lines_up_to(cut / "metrics.jsonl", 4)
    second = run_cli(["sweep", str(_sweep(tmp_path)), "--workdir", str(root), "--parallel", "2"], cache_dir,
                     check=False)
    assert "2 finished, 2 to run" in second.stdout and second.returncode == 2
    rows = _check_outcome(root)
    assert "resuming at step 4" in (cut / "train.log").read_text()
    assert comparable(read_lines(cut)) == comparable(uninterrupted)
    attempts = {r["run"]: json.loads((root / r["run"] / "trial.json").read_text())["attempts"] for r in rows}
    assert attempts == {r["run"]: 2 if r["run"] in (cut.name, "warmup_steps=50") else 1 for r in rows}

    monkeypatch.chdir(REPO)
    runners.run(spec.load(_sweep(tmp_path)), root, "print")
    printed = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("# ") and line.endswith(": finished") for line in printed) == 3
    assert [line for line in printed if line.startswith("xlpretrain train")] == [
        f"xlpretrain train --config configs/quickstart.py --workdir {root / 'warmup_steps=50'} "
        + " ".join(f"--config.{k}={v}" for k, v in spec.load(_sweep(tmp_path)).trials[-1].overrides.items())]

    # A finished trial is not taken as done under settings the sweep file has changed since.
    changed = tmp_path / "changed_sweep.py"
    changed.write_text(SWEEP.replace('"model.d_inner": 64', '"model.d_inner": 128'))
    with pytest.raises(UserError, match=r"^trial model.mem_len=0,eval.mem_len=0,seed=0,warmup_steps=2 finished in "
                                        r".* with other settings than the sweep file's now \(model.d_inner: 64 -> "
                                        r"128\); move that folder away"):
        runners.run(spec.load(changed), root, "print")

    reported = run_cli(["report", str(root), "--metric", "valid/bits_per_token"], cache_dir).stdout
    assert reported.startswith("| run | eval.mem_len | model.mem_len | train.warmup_steps | seed |") and reported.count("\n| ") == 5
    assert "| failed |" in reported and "train.warmup_steps must be in" in reported
    with open(root / "report.csv") as f:
        assert [row["run"] for row in csv.DictReader(f)] == [row["run"] for row in rows]

    plotted = run_cli(["plot", str(root), "--metric", "valid/bits_per_token", "--x", "tokens"], cache_dir).stdout
    assert f"wrote {root / 'valid-bits_per_token.png'} (3 runs)" in plotted
    for x in ("step", "seconds"):  # into a folder the plot makes
        report.plot(root, "valid/bits_per_token", x, tmp_path / "plots" / f"{x}.png")
    for out in (root / "valid-bits_per_token.png", tmp_path / "plots" / "step.png", tmp_path / "plots" / "seconds.png"):
        with Image.open(out) as image:
            assert image.format == "PNG" and image.size[0] > 400
            assert sorted(json.loads(image.text["Description"])) == [  # one line per run, by what differs
                "eval.mem_len=0,model.mem_len=0,seed=0", "eval.mem_len=8,model.mem_len=8,seed=0",
                "eval.mem_len=8,model.mem_len=8,seed=1"]
            image.load()  # decodes every pixel

    bad = run_cli(["plot", str(root), "--metric", "valid/nothing"], cache_dir, check=False)
    assert bad.returncode == 2 and "no run under" in bad.stderr


@pytest.fixture
def ray_cluster(cache_dir):
    """A one-machine Ray cluster, started for the test with the environment of the suite's commands."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = str(Path(sys.executable).parent / "ray")
    head = subprocess.Popen([ray, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"], env=cli_env(cache_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    yield f"127.0.0.1:{port}"
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=5)
    except subprocess.TimeoutExpired:  # Ray's processes share the head's session: none is left
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()


def test_ray_sweep(tmp_path, cache_dir, ray_cluster):
    root = tmp_path / "sweep"
    deadline = time.time() + 120
    while True:  # the head takes a few seconds to accept drivers
        ran = run_cli(["sweep", str(_sweep(tmp_path)), "--workdir", str(root), "--runner", "ray",
                       "--ray-address", ray_cluster], cache_dir, check=False)
        if "no Ray cluster" not in ran.stderr or time.time() > deadline:
            break
        time.sleep(2)
    assert ran.returncode == 2 and "1 trial(s) failed" in ran.stderr, ran.stderr[-2000:]
    _check_outcome(root)
    assert all(read_lines(root / run.name) for run in find_runs(root) if run.name != "warmup_steps=50")
    assert str(REPO / "configs" / "quickstart.py") in json.loads((root / "warmup_steps=50" / "trial.json").read_text())["command"]
