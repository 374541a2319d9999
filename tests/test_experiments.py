"""The research scripts under experiments/ run against the package as it is."""

import runpy
import subprocess
import sys

import pytest
from conftest import REPO

from xlpretrain import cli


@pytest.fixture
def malloc_tuned(monkeypatch):
    """Each script tunes malloc as the `xlpretrain` command does (recorded here, not done to pytest)."""
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True))
    yield
    assert calls == [True]


def test_attention_versions_times_the_layer_against_itself(monkeypatch, capsys, malloc_tuned):
    script, layer = REPO / "experiments" / "attention_versions.py", REPO / "xlpretrain" / "models" / "attention.py"
    monkeypatch.setattr(sys, "argv", [str(script), str(layer), str(layer), "--pairs", "2"])
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert "largest gradient difference 0.00e+00" in printed and "times as long (median over pairs)" in printed


def test_step_versions_times_the_step_against_a_commit(monkeypatch, capsys, malloc_tuned):
    """A one-layer quickstart's step on random batches against the same step at HEAD, extracted from
    git: with the package as committed (a fresh clone) the two train equal parameters."""
    script = REPO / "experiments" / "step_versions.py"
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", [str(script), "HEAD", "--config", "configs/quickstart.py", "--steps", "1",
                                      "--synthetic", "--config.model.n_layer=1", "--config.model.vocab_size=1000"])
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert "HEAD: " in printed and "times as long (median over pairs)" in printed
    committed = subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "xlpretrain"]).returncode == 0
    assert "largest parameter difference after 4 steps: 0.00e+00" in printed or not committed


def test_host_overlap_adds_the_host_delay_to_a_synchronous_step(monkeypatch, capsys, malloc_tuned):
    """80 quickstart steps with 50 ms of sleep in every batch, the loop waiting on each step: every
    step takes the delay at least. (The script patches the stream and the loop; monkeypatch puts
    them back.)"""
    from xlpretrain.data.stream import OrderedStream
    from xlpretrain.train import loop
    monkeypatch.setattr(OrderedStream, "batch_at", OrderedStream.batch_at)
    monkeypatch.setattr(loop._Window, "add", loop._Window.add)
    script = REPO / "experiments" / "host_overlap.py"
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", [str(script), "0.05", "sync"])
    runpy.run_path(str(script), run_name="__main__")
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("host delay 50 ms, sync: ") and float(line.split()[-4]) >= 50, line
