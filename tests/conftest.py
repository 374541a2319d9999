"""Shared helpers: the benchmark data beside the repository, and running the `xlpretrain` command."""

import atexit
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# XLA without its LLVM optimisations and with its older elementwise emitter instead of the MLIR
# fusion emitters: the suite compiles hundreds of small programs and runs few steps of each, and
# unoptimised code compiles 2 to 4 times faster, the older emitter's about 2 times faster again
# (a tiny ELECTRA's train step: 5.7 s, 2.6 s without the fusion emitters). The XLA of jaxlib 0.11
# has no older emitter, and stops at a flag it does not know.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    flags = " --xla_backend_optimization_level=0"
    if int(importlib.metadata.version("jaxlib").split(".")[1]) < 11:
        flags += " --xla_cpu_use_fusion_emitters=false"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + flags).strip()

# One JAX compilation cache for this session's processes (this one and every command a test
# starts), so that the many runs of the same small programs compile each program once. Fresh per
# session: nothing compiled by another version of the code is reused.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="xlpretrain-tests-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
# Every program, however fast it compiled (JAX's default caches only those over 1 s): the suite's
# many short commands compile the same small programs, and reading them back is faster (the
# sweep and end-to-end tests run 17 to 20% faster).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# A run small enough to train in seconds: the quickstart language, one narrow layer, dropout on
# (so that exact resume also covers the dropout RNG).
TINY = [
    "--config.data.quickstart.train_tokens=20000", "--config.data.quickstart.valid_tokens=2000",
    "--config.data.quickstart.test_tokens=2000",
    "--config.model.n_layer=1", "--config.model.d_model=32", "--config.model.n_head=2", "--config.model.d_head=16",
    "--config.model.d_inner=64", "--config.model.dropout=0.1", "--config.model.mem_len=8",
    "--config.train.batch_size=4", "--config.train.tgt_len=8", "--config.train.steps=12",
    "--config.train.warmup_steps=2", "--config.train.log_every=1", "--config.train.eval_every=4",
    "--config.train.checkpoint_every=4", "--config.eval.tgt_len=8", "--config.eval.mem_len=8",
    "--config.eval.batch_size=2",
]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"the benchmark corpora are expected in {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One corpus cache for the whole session, so each corpus is prepared once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def small_wikitext(tmp_path_factory, shared_data):
    """The first articles of WikiText-2's splits, for runs of a few seconds."""
    out = tmp_path_factory.mktemp("wikitext")
    for split, lines in (("train", 1500), ("valid", 200), ("test", 200)):
        text = (shared_data / "wikitext-2" / f"{split}.txt").read_text(encoding="utf-8").split("\n")
        (out / f"{split}.txt").write_text("\n".join(text[:lines]) + "\n", encoding="utf-8")
    return out


def cli_env(cache_dir: Path, devices: int = 1) -> dict:
    """The environment of a command a test starts: this one's, with `devices` CPU devices."""
    env = dict(os.environ, XLPRETRAIN_CACHE=str(cache_dir), PYTHONUNBUFFERED="1")
    env["XLA_FLAGS"] = f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count={devices}"
    return env


def run_cli(args: list[str], cache_dir: Path, devices: int = 1, check: bool = True,
            python: list[str] | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs `xlpretrain ARGS` in a fresh process (or `python` driver code that calls the CLI), with
    `env` added to the environment."""
    command = (python or [sys.executable, "-m", "xlpretrain.cli"]) + args
    result = subprocess.run(command, cwd=REPO, env=dict(cli_env(cache_dir, devices), **(env or {})),
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def read_lines(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def comparable(lines: list[dict]) -> list[dict]:
    """Everything logged but wall-clock throughput and time."""
    return [{k: v for k, v in line.items() if k not in ("tokens_per_sec", "seconds")} for line in lines]

