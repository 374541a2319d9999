"""experiments/tpu/launch.py: the commands its dry runs print, its one-line errors, and that without
--dry-run it runs those same commands in order (against a stand-in gcloud; no real one is called)."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[1] / "experiments" / "tpu" / "launch.py"
TPU = ["--name", "txl", "--zone", "us-central2-b"]


def launch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs launch.py; by default with a PATH where no gcloud can be found, so that a test never reaches a real one."""
    env = env or {**os.environ, "PATH": "/nonexistent"}
    return subprocess.run([sys.executable, str(LAUNCH), *args], capture_output=True, text=True, env=env, timeout=30)


def dry_run(action: str, *args: str) -> list[list[str]]:
    """The commands a dry run prints, each split as a shell would split it."""
    result = launch(action, "--dry-run", *args)
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()]


def remote_script(command: list[str]) -> str:
    """What an ssh command runs on the workers."""
    [script] = [arg[len("--command="):] for arg in command if arg.startswith("--command=")]
    return script


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("launch.py: error: "), result.stderr
    for word in words:
        assert word in result.stderr


@pytest.mark.parametrize("accelerator, version", [
    ("v4-32", "tpu-ubuntu2204-base"),
    ("v5litepod-16", "v2-alpha-tpuv5-lite"),
    ("v5p-64", "v2-alpha-tpuv5"),
    ("v6e-8", "v2-alpha-tpuv6e"),
])
def test_create_picks_the_runtime_of_the_family(accelerator, version):
    [command] = dry_run("create", *TPU, "--accelerator-type", accelerator)
    assert command == ["gcloud", "compute", "tpus", "tpu-vm", "create", "txl", f"--accelerator-type={accelerator}",
                       f"--version={version}", "--zone=us-central2-b"]


def test_create_takes_a_given_version_spot_and_project():
    [command] = dry_run("create", *TPU, "--accelerator-type", "v4-32", "--version", "my-runtime", "--spot",
                        "--project", "proj")
    assert "--version=my-runtime" in command and "--spot" in command and "--project=proj" in command


@pytest.mark.parametrize("accelerator", ["v9-8", "v5e-16", "v4"])
def test_create_refuses_an_unknown_family(accelerator):
    assert_one_line_error(launch("create", *TPU, "--accelerator-type", accelerator, "--dry-run"),
                          accelerator, "v5litepod", "--version")


def test_setup_from_a_git_url_clones_the_ref_on_every_worker():
    [command] = dry_run("setup", *TPU, "--repo", "https://example.com/xlpretrain.git", "--ref", "v0.1")
    assert command[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "txl"] and "--worker=all" in command
    steps = remote_script(command).split(" && ")
    assert "git clone -q https://example.com/xlpretrain.git xlpretrain" in steps
    assert "git -C xlpretrain checkout -q v0.1" in steps
    assert shlex.split(steps[-1]) == ["venv/bin/pip", "install", "-q", "jax[tpu]", "-e", "./xlpretrain"]


def test_setup_from_a_local_checkout_copies_a_git_archive_to_every_worker(tmp_path):
    archive, copy, install = dry_run("setup", *TPU, "--repo", str(tmp_path))
    assert archive[:4] == ["git", "-C", str(tmp_path), "archive"] and archive[-1] == "HEAD"
    tarball = archive[archive.index("-o") + 1]
    assert copy[:7] == ["gcloud", "compute", "tpus", "tpu-vm", "scp", tarball, "txl:xlpretrain.tar.gz"]
    assert "--worker=all" in copy and "--worker=all" in install
    assert "tar -xzf xlpretrain.tar.gz -C xlpretrain" in remote_script(install)


def test_setup_refuses_a_repo_that_is_neither(tmp_path):
    assert_one_line_error(launch("setup", *TPU, "--repo", str(tmp_path / "missing"), "--dry-run"), "git URL")


def test_run_starts_the_command_on_every_worker_with_coordinator_auto():
    override = "--config.model.cutoffs=(20000, 40000, 200000)"
    train = ["xlpretrain", "train", "--config", "xlpretrain/configs/transformer_xl/wt103_base.py",
             "--workdir", "/mnt/shared/wt103", override]
    [command] = dry_run("run", *TPU, "--", *train)
    assert "--worker=all" in command
    script = shlex.split(remote_script(command))
    start = script.index("nohup") + 1
    # The override with spaces arrives as one argument, and --coordinator auto comes last.
    assert script[start:start + len(train) + 2] == [*train, "--coordinator", "auto"]
    assert script[start + len(train) + 2:start + len(train) + 4] == [">>", "xlpretrain.log"]
    assert "&" in script and "/dev/null" in script


@pytest.mark.parametrize("args, words", [
    ([], ["after --"]),
    (["--", "xlpretrain", "data", "download", "wt103"], ["exec"]),
    (["--", "xlpretrain", "train", "--workdir", "/w", "--coordinator", "10.0.0.1:1234"], ["--coordinator auto"]),
    (["--", "xlpretrain", "train", "--workdir", "runs/wt103"], ["runs/wt103", "mounted on every worker"]),
    (["--", "xlpretrain", "train", "--workdir=gs://bucket/wt103"], ["gs://"]),
    (["--", "xlpretrain", "train", "--workdir", "/w", "--dry-run"], ["before --"]),
])
def test_run_refuses_mistakes_in_one_line(args, words):
    assert_one_line_error(launch("run", "--dry-run", *TPU, *args), *words)


def test_exec_logs_stop_delete():
    [exec_] = dry_run("exec", *TPU, "--", "xlpretrain", "data", "download", "wt103", "--dir", "data/wt103")
    assert "--worker=all" in exec_
    assert remote_script(exec_).endswith(" && xlpretrain data download wt103 --dir data/wt103")
    [logs] = dry_run("logs", *TPU)
    assert "--worker=0" in logs and remote_script(logs) == "tail -n 100 xlpretrain.log"
    [stop] = dry_run("stop", *TPU)
    assert "--worker=all" in stop and remote_script(stop).startswith("kill -TERM")
    [delete] = dry_run("delete", *TPU)
    assert delete == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "txl", "--zone=us-central2-b"]
    assert_one_line_error(launch("delete", "--dry-run", *TPU, "--", "xlpretrain"), "no command")


@pytest.fixture
def fake_gcloud(tmp_path):
    """A PATH holding only a stand-in gcloud that records its arguments and exits with $GCLOUD_STATUS."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "gcloud"
    script.write_text('#!/bin/sh\nprintf "%s\\n" gcloud "$@" END >> "$GCLOUD_CALLS"\nexit "${GCLOUD_STATUS:-0}"\n')
    script.chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": str(bin_dir), "GCLOUD_CALLS": str(calls)}

    def recorded() -> list[list[str]]:
        return [call.strip("\n").split("\n") for call in calls.read_text().split("END\n") if call]
    return env, recorded


def test_without_dry_run_it_runs_the_printed_commands(fake_gcloud):
    env, recorded = fake_gcloud
    args = ["run", *TPU, "--", "xlpretrain", "train", "--workdir", "/mnt/shared/w", "--config.train.note=a b"]
    result = launch(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert recorded() == dry_run(*args)


def test_a_failing_command_ends_with_one_line_naming_it(fake_gcloud):
    env, recorded = fake_gcloud
    result = launch("delete", *TPU, env={**env, "GCLOUD_STATUS": "3"})
    assert_one_line_error(result, "exit status 3", "gcloud compute tpus tpu-vm delete txl")


def test_a_missing_gcloud_is_one_line():
    assert_one_line_error(launch("delete", *TPU), "gcloud not found")
