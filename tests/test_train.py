"""End to end through the `xlpretrain` command, each run in its own process: exact resume after
SIGKILL, a kill in the middle of a checkpoint write, divergence, workdir safety, eval and bench."""

import copy
import gzip
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, TINY, cli_env, comparable, read_lines, run_cli
from xlpretrain import cli
from xlpretrain import config as config_lib
from xlpretrain.data import synthetic
from xlpretrain.data.examples import ExampleStream
from xlpretrain.data.stream import OrderedStream
from xlpretrain.data.xlnet import XLNetStream
from xlpretrain.errors import UserError
from xlpretrain.train import bench, profile
from xlpretrain.train.checkpoint import Checkpoints
from xlpretrain.train.experiment import CHECKPOINT_DIR, CONFIG_FILE, Experiment
from xlpretrain.train.logging import MetricsLog, keep_lines_up_to, read_metrics

pytestmark = pytest.mark.slow

# Long enough that a kill lands in the middle of the run.
RESUMABLE = TINY + ["--config.train.steps=300", "--config.train.eval_every=50", "--config.train.checkpoint_every=50"]
TRAIN = ["train", "--config", "configs/quickstart.py"]

# Runs the command with orbax's commit of the checkpoint of step 100 replaced by a SIGKILL: the
# checkpoint's files are written but the run dies before the write completes.
KILL_DURING_SAVE = """
import os, signal, sys
from orbax.checkpoint._src.path import atomicity
for cls in (atomicity.AtomicRenameTemporaryPath, atomicity.CommitFileTemporaryPath):
    commit = cls.finalize
    async def finalize(self, commit=commit):
        if str(self.get_final()).endswith("/100"):
            os.kill(os.getpid(), signal.SIGKILL)
        return await commit(self)
    cls.finalize = finalize
from xlpretrain.cli import main
main(sys.argv[1:])
"""

# Sends the run a SIGTERM during step 6, between the log lines of steps 4 and 8 (log_every=4).
PREEMPT_AT_6 = """
import os, signal, sys
from xlpretrain.train import loop
add = loop._Window.add
def add_then_stop(self, step, metrics):
    add(self, step, metrics)
    if step == 6:
        os.kill(os.getpid(), signal.SIGTERM)
loop._Window.add = add_then_stop
from xlpretrain.cli import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    run_cli(TRAIN + ["--workdir", str(workdir)] + RESUMABLE, cache_dir)
    return workdir


def test_a_run_logs_what_it_promises(uninterrupted):
    lines = read_lines(uninterrupted)
    train = [line for line in lines if line["split"] == "train"]
    assert [line["step"] for line in train] == list(range(1, 301))
    assert {"loss", "ppl", "bits_per_token", "tokens_per_sec", "lr", "seconds"} <= set(train[0])
    seconds = [line["seconds"] for line in lines]
    assert seconds == sorted(seconds) and seconds[0] > 0
    valid = [line for line in lines if line["split"] == "valid"]
    assert [line["step"] for line in valid] == [50, 100, 150, 200, 250, 300]
    test = [line for line in lines if line["split"] == "test"]
    assert len(test) == 1 and test[0]["checkpoint_step"] == min(valid, key=lambda x: x["loss"])["step"]
    for line in valid + test:
        assert line["true_bits_per_token"] > 5 and line["tokens"] == 2 * (2000 // 2 - 1)
    assert (uninterrupted / "config.json").is_file()
    assert list((uninterrupted / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_after_sigkill_logs_identical_losses(uninterrupted, tmp_path, cache_dir):
    workdir = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "xlpretrain.cli"] + TRAIN + ["--workdir", str(workdir)]
                               + RESUMABLE, cwd=REPO, env=cli_env(cache_dir), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if metrics.is_file() and any(json.loads(line)["step"] >= 120 for line in metrics.read_text().splitlines()
                                     if line.endswith("}")):
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = max(line["step"] for line in read_lines(workdir))
    assert 120 <= killed_at < 300, "the kill should land mid-run"

    resumed = run_cli(TRAIN + ["--workdir", str(workdir)] + RESUMABLE, cache_dir)
    assert "resuming at step" in resumed.stdout
    assert comparable(read_lines(workdir)) == comparable(read_lines(uninterrupted))
    seconds = [line["seconds"] for line in read_lines(workdir)]
    assert seconds == sorted(seconds), "the wall time goes on from the lines kept at the resume"


def test_a_sigterm_between_log_lines_resumes_to_the_same_lines(tmp_path, cache_dir):
    """A SIGTERM comes when it comes: stopped after step 6 of windows of 4 steps, the resumed run's
    line of step 8 still pools steps 5 to 8, as the uninterrupted run's does."""
    every_4 = TINY + ["--config.train.log_every=4"]
    reference = tmp_path / "reference"
    run_cli(TRAIN + ["--workdir", str(reference)] + every_4, cache_dir)
    workdir = tmp_path / "stopped"
    stopped = run_cli(["--workdir", str(workdir)] + TRAIN[1:] + every_4, cache_dir, check=False,
                      python=[sys.executable, "-c", PREEMPT_AT_6, "train"])
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert "stopped by SIGTERM after step 6" in stopped.stderr
    assert [line["step"] for line in read_lines(workdir)] == [4, 4]  # train and valid lines of step 4

    resumed = run_cli(TRAIN + ["--workdir", str(workdir)] + every_4, cache_dir)
    assert "resuming at step 6" in resumed.stdout
    assert comparable(read_lines(workdir)) == comparable(read_lines(reference))


def test_kill_during_a_checkpoint_write_keeps_the_previous_one(uninterrupted, tmp_path, cache_dir):
    workdir = tmp_path / "killed_in_save"
    died = run_cli(["--workdir", str(workdir)] + TRAIN[1:] + RESUMABLE, cache_dir, check=False,
                   python=[sys.executable, "-c", KILL_DURING_SAVE, "train"])
    assert died.returncode == -signal.SIGKILL
    committed = sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert committed == ["50"]

    resumed = run_cli(TRAIN + ["--workdir", str(workdir)] + RESUMABLE, cache_dir)
    assert "resuming at step 50" in resumed.stdout
    assert comparable(read_lines(workdir)) == comparable(read_lines(uninterrupted))


def test_train_starts_from_the_weights_of_a_step_0_checkpoint(tmp_path, cache_dir, monkeypatch):
    """`convert import` leaves a step-0 checkpoint for `train` to continue from. Here its weights are
    all zero, so the model predicts the uniform distribution: `eval` and the first step give log(vocab)."""
    monkeypatch.setenv("XLPRETRAIN_CACHE", str(cache_dir))
    exp = Experiment(config_lib.override(config_lib.load("configs/quickstart.py"), [a[9:] for a in TINY]))
    workdir = tmp_path / "imported"
    workdir.mkdir()
    (workdir / CONFIG_FILE).write_text(config_lib.to_json(exp.config))
    with exp.context():
        state = exp.init_state()
        checkpoints = Checkpoints(workdir / CHECKPOINT_DIR, 2)
        checkpoints.save(state.replace(params=jax.tree.map(jnp.zeros_like, state.params)), None)
        checkpoints.close()
    uniform = np.log(exp.config.model.vocab_size)
    # With no valid loss recorded yet, `eval` takes the latest checkpoint.
    evaluated = json.loads(run_cli(["eval", "--workdir", str(workdir)], cache_dir).stdout.strip().splitlines()[-1])
    assert evaluated["step"] == 0 and evaluated["loss"] == pytest.approx(uniform, rel=1e-6)
    run = run_cli(["train", "--config", "configs/quickstart.py", "--workdir", str(workdir)] + TINY, cache_dir)
    assert "resuming at step 0" in run.stdout
    first = [line for line in read_lines(workdir) if line["split"] == "train"][0]
    assert first["step"] == 1
    assert first["loss"] == pytest.approx(uniform, rel=1e-6)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, cache_dir):
    workdir = tmp_path / "diverged"
    run_cli(TRAIN + ["--workdir", str(workdir)] + TINY + ["--config.train.steps=8"], cache_dir)
    blown = run_cli(TRAIN + ["--workdir", str(workdir)] + TINY + ["--config.train.steps=16", "--config.train.lr=1e30"],
                    cache_dir, check=False)
    assert blown.returncode == 2
    message = blown.stderr.strip().splitlines()[-1]
    step = re.match(r"xlpretrain: error: the loss became (nan|inf) at step (\d+); training stopped", message)
    assert step and 8 < int(step.group(2)) <= 16, message
    assert "the last good checkpoint is step 8" in message
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["4", "8"]


# A stand-in for the wandb package that records what a run asks of it, one JSON line per call.
FAKE_WANDB = """
import json, os

class _Run:
    def __init__(self, **kwargs):
        self._write({"init": {k: v for k, v in kwargs.items() if k != "config"}, "config": kwargs["config"]["seed"]})
    def _write(self, record):
        with open(os.environ["FAKE_WANDB_LOG"], "a") as f:
            f.write(json.dumps(record) + "\\n")
    def log(self, values, step):
        self._write({"log": values, "step": step})
    def finish(self):
        self._write({"finish": True})

def init(**kwargs):
    return _Run(**kwargs)
"""


def test_a_workdir_of_another_model_is_refused_unless_restart_and_wandb_follows(tmp_path, cache_dir):
    """Also Weights & Biases, through a stand-in wandb module: it gets exactly the scalars of
    metrics.jsonl, a resumed run goes on in the same W&B run, and a restarted run gets one of its own."""
    (tmp_path / "fake" / "wandb").mkdir(parents=True)
    (tmp_path / "fake" / "wandb" / "__init__.py").write_text(FAKE_WANDB)
    record = tmp_path / "wandb.jsonl"
    env = {"PYTHONPATH": str(tmp_path / "fake"), "FAKE_WANDB_LOG": str(record)}
    wandb = ["--config.wandb.enabled=True", "--config.wandb.project=p", "--config.wandb.mode=offline"]
    workdir = tmp_path / "other"

    def recorded():
        return [json.loads(line) for line in record.read_text().splitlines()]

    def logged(calls):
        return [(call["step"], call["log"]) for call in calls if "log" in call]

    def scalars(lines):
        return [(line["step"], {f"{line['split']}/{k}": v for k, v in line.items()
                                if k not in ("step", "split") and isinstance(v, (int, float))}) for line in lines]

    run_cli(TRAIN + ["--workdir", str(workdir)] + TINY + wandb, cache_dir, env=env)
    first_id = (workdir / "wandb_run_id").read_text()
    calls = recorded()
    assert [call["init"] for call in calls if "init" in call] == [
        {"project": "p", "entity": None, "name": "other", "id": first_id, "resume": "allow", "dir": str(workdir),
         "mode": "offline"}]
    assert logged(calls) == scalars(read_lines(workdir))
    assert calls[-1] == {"finish": True}

    # Trained on to step 16, the run resumes at step 12 and logs its new lines to the same W&B run.
    first_lines = len(read_lines(workdir))
    run_cli(TRAIN + ["--workdir", str(workdir)] + TINY + wandb + ["--config.train.steps=16"], cache_dir, env=env)
    resumed = recorded()[len(calls):]
    new_lines = read_lines(workdir)[first_lines:]
    assert resumed[0]["init"]["id"] == first_id and resumed[0]["init"]["resume"] == "allow"
    assert new_lines[0]["step"] > 12 and new_lines[-1]["step"] == 16
    assert logged(resumed) == scalars(new_lines) and resumed[-1] == {"finish": True}

    short = run_cli(TRAIN + ["--workdir", str(workdir)] + TINY, cache_dir, check=False)
    assert short.returncode == 2 and short.stderr.strip().splitlines()[-1] == (
        f"xlpretrain: error: workdir {workdir} holds a checkpoint of step 16, past train.steps=12; raise "
        f"train.steps, pass --restart or choose another --workdir")

    refused = run_cli(TRAIN + ["--workdir", str(workdir)] + TINY + ["--config.model.n_layer=2"], cache_dir,
                      check=False)
    assert refused.returncode == 2
    assert "holds a checkpoint of a different model or data (model.n_layer: 1 -> 2);" in refused.stderr
    assert "pass --restart to start over" in refused.stderr

    run_cli(TRAIN + ["--workdir", str(workdir), "--restart"] + TINY + wandb + ["--config.model.n_layer=2"], cache_dir,
            env=env)
    (previous,) = (workdir / "previous").iterdir()
    assert {"config.json", "metrics.jsonl", "checkpoints", "wandb_run_id"} <= {p.name for p in previous.iterdir()}
    inits = [call["init"] for call in recorded() if "init" in call]
    assert len(inits) == 3 and inits[2]["id"] == (workdir / "wandb_run_id").read_text() != first_id



def test_a_line_cut_short_by_a_kill_is_dropped_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "split": "train"}\n{"step": 2, "split": "train"}\n{"step": 3, "spl')
    assert [line["step"] for line in read_metrics(tmp_path)] == [1, 2]
    keep_lines_up_to(path, 2)
    assert path.read_text() == '{"step": 1, "split": "train"}\n{"step": 2, "split": "train"}\n'


def test_wandb_enabled_without_the_package_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    config = config_lib.defaults()
    config.wandb.enabled = True
    with pytest.raises(UserError, match=r"^wandb.enabled needs the wandb package: pip install 'xlpretrain\[wandb\]'$"):
        MetricsLog(tmp_path, config)
    assert not (tmp_path / "tensorboard").exists()  # no TensorBoard writer left open behind the error


def test_eval_command_reproduces_the_test_line_and_takes_eval_overrides(uninterrupted, cache_dir, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(uninterrupted, workdir)  # eval adds lines to metrics.jsonl; other tests read the fixture's
    test_line = [line for line in read_lines(workdir) if line["split"] == "test"][0]
    same = run_cli(["eval", "--workdir", str(workdir), "--split", "test"], cache_dir)
    printed = json.loads(same.stdout.strip().splitlines()[-1])
    assert printed["step"] == test_line["checkpoint_step"]
    assert printed["loss"] == pytest.approx(test_line["loss"], rel=1e-6)

    longer = run_cli(["eval", "--workdir", str(workdir), "--config.eval.mem_len=16",
                      "--config.eval.same_length=True"], cache_dir)
    line = json.loads(longer.stdout.strip().splitlines()[-1])
    assert line["eval"]["mem_len"] == 16 and line["eval"]["same_length"] is True
    assert comparable(read_lines(workdir)[-1:]) == [line]

    reshaped = run_cli(["eval", "--workdir", str(workdir), "--config.model.d_inner=128"], cache_dir, check=False)
    assert reshaped.returncode == 2 and reshaped.stderr.strip().splitlines()[-1] == (
        "xlpretrain: error: eval restores the run's weights, so the model stays as trained: drop "
        "--config.model.d_inner (the evaluation's settings are eval.*)")


def test_bench_and_params_commands(cache_dir, shared_data, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("XLPRETRAIN_CACHE", str(cache_dir))
    cli.run(["bench", "--config", "configs/quickstart.py", "--steps", "3", "--profile", str(tmp_path)] + TINY)
    *table, last = capsys.readouterr().out.strip().splitlines()
    result = json.loads(last)
    assert result["tokens_per_sec"] > 0 and result["compile_seconds"] > 0 and result["tokens_per_step"] == 32
    # The step's matmuls (tests/test_plan.py checks the count by hand); XLA's count of the compiled
    # step adds the softmax, normalisations and the optimizer, a large share in a model this small.
    assert 1 < result["compiled_flops_per_token"] / result["flops_per_token"] < 1.5, result
    assert 0 < result["mfu"] < 1 and result["peak_source"].startswith("measured (2048x2048 matmul, float32)")
    assert result["compiled_bytes_per_device"] > 0 and result["peak_bytes_in_use"] is None  # CPU reports none
    assert any(line.startswith("MFU ") for line in table)
    # --profile: the traced steps' op time by scope, the reverse pass apart, the trace kept for viewers.
    where = result["profile"]
    scopes = {row["scope"]: row for row in where["scopes"]}
    attention = scopes["TransformerXL/TransformerXL._layers/layer_*/attn"]
    assert attention["forward_ms"] > 0 and attention["backward_ms"] > 0
    assert scopes["optimizer"]["forward_ms"] > 0 and scopes["optimizer"]["backward_ms"] == 0
    assert Path(where["trace"]).is_relative_to(tmp_path) and Path(where["trace"]).exists()
    assert any(line.startswith("TransformerXL/TransformerXL._layers/layer_*/attn ") for line in table)
    # The official PyTorch code builds the small benchmark model with 5,987,600 parameters.
    cli.run(["params", "--config", "configs/transformer_xl/bench_small.py"])
    assert capsys.readouterr().out.split() == ["5,987,600", "total"]


def test_profile_puts_the_time_where_the_work_is(tmp_path):
    """The gradient of a large matmul's tanh (scope "large") and of a sine of 16 numbers (scope
    "small"): the trace's op time goes to "large", to both its forward and its reverse pass."""
    def loss(a, b, c):
        with jax.named_scope("large"):
            large = jnp.sum(jnp.tanh(a @ b))
        with jax.named_scope("small"):
            return large + jnp.sum(jnp.sin(c))

    a, c = jnp.ones((1024, 1024)) / 1024, jnp.ones(16)
    step = jax.jit(jax.grad(loss, argnums=(0, 2))).lower(a, a, c).compile(
        profile.COMPILER_OPTIONS.get(jax.devices()[0].platform))
    step(a, a, c)
    where = profile.by_scope(profile.trace(lambda: step(a, a, c), 3, tmp_path), step.as_text(), 3)
    scopes = {row["scope"]: row for row in where["scopes"]}
    assert scopes["large"]["share"] > 0.9 and scopes["large"]["forward_ms"] > 0 and scopes["large"]["backward_ms"] > 0
    assert scopes["small"]["share"] < 0.05
    assert where["longest_ops"][0]["scope"] == "large"


def test_op_names_become_scopes():
    assert profile.scope_of("jit(step)/transpose(jvp(TransformerXL))/TransformerXL._layers/layer_11/attn/"
                            "hbqe,hbke->hbqk/dot_general") == ("TransformerXL/TransformerXL._layers/layer_*/attn", True)
    assert profile.scope_of("jit(step)/jvp(TransformerXL)/drop/jit(_bernoulli)/jit(_uniform)/shift_right_logical") \
        == ("TransformerXL/drop", False)
    assert profile.scope_of("jit(step)/optimizer/mul") == ("optimizer", False)
    assert profile.scope_of("jit(step)/add") == (profile.OUTSIDE, False)
    # Rematerialised (model.remat): the layer's path is recorded twice, under a bare "checkpoint".
    assert profile.scope_of("jit(step)/transpose(jvp(TransformerXL))/TransformerXL._layers/jvp(TransformerXL)/"
                            "TransformerXL._layers/checkpoint/layer_0/attn/mul") \
        == ("TransformerXL/TransformerXL._layers/layer_*/attn", True)
    # A scanned layer (model.scan_layers) is a loop's body, called "closed_call" by jax 0.10 and
    # "eval_jaxpr" by 0.11; inside it, some ops' paths have no jit(step) in front.
    for call in ("closed_call", "eval_jaxpr"):
        assert profile.scope_of(f"jit(step)/jvp(TransformerXL)/TransformerXL._layers/while/body/{call}/layers/layer/"
                                "attn/dot_general") == ("TransformerXL/TransformerXL._layers/layers/layer/attn", False)
    assert profile.scope_of("layers/layer/norm_ff/mul") == ("layers/layer/norm_ff", False)
    # An all-reduce XLA combined from two gradients: their common scope.
    assert profile.scope_of("jit(step)/(transpose(jvp(TransformerXL.nll))/vocab.nll/reduce_sum:"
                            "transpose(jvp(TransformerXL.nll))/vocab.nll/vocab._bin_logits/dot_general)/all-reduce") \
        == ("TransformerXL.nll/vocab.nll", True)


def test_the_profile_counts_each_ops_own_time_on_the_devices_timeline(tmp_path):
    """A made-up trace: a while loop's event is left out (its body's op has its own); an op whose
    event encloses another's on its thread counts the difference; an op without an op_name takes
    its operand's scope, or counts under "(no scope)" if that has none; where a device's timeline
    exists, the host's events of the same ops do not count."""
    hlo = """HloModule jit_step

ENTRY %main.1 (p: f32[2]) -> f32[2] {
  %p = f32[2]{0} parameter(0)
  %while.2 = (s32[], /*index=1*/f32[2]{0}) while(%p), condition=%c, body=%b, metadata={op_name="jit(step)/jvp(M)/drop/while"}
  %add.3 = f32[2]{0} add(%while.2, %p), metadata={op_name="jit(step)/jvp(M)/drop/add"}
  %copy.4 = f32[2]{0} copy(%p)
  %call.5 = f32[2]{0} call(%add.3), to_apply=%f, metadata={op_name="jit(step)/jvp(M)/ff/call"}
  ROOT %copy.6 = f32[2]{0} copy(%call.5)
}
"""
    def op(name, ts, dur, pid):
        return {"ph": "X", "name": name, "ts": ts, "dur": dur, "pid": pid, "tid": 1,
                "args": {"hlo_op": name, "hlo_module": "jit_step"}}

    events = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
              {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/host:CPU"}},
              op("while.2", 0, 10, 1), op("add.3", 2, 6, 1), op("copy.4", 20, 4, 1), op("call.5", 30, 8, 1),
              op("copy.6", 32, 3, 1), op("add.3", 0, 50, 2)]
    path = tmp_path / "made.trace.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": events}, f)
    where = profile.by_scope(path, hlo, steps=1)
    ms = {row["scope"]: row["forward_ms"] for row in where["scopes"]}
    assert ms == pytest.approx({"M/drop": 0.006, "M/ff": 0.008, profile.OUTSIDE: 0.004})
    assert {row["op"]: row["ms"] for row in where["longest_ops"]} == pytest.approx(
        {"add.3": 0.006, "call.5": 0.005, "copy.4": 0.004, "copy.6": 0.003})


def test_a_fusion_takes_the_scope_of_the_ops_inside_it():
    """As XLA's CPU backend prints them: a reduction's to_apply region (whose add carries a scope-less
    op_name) does not vote, a parameter's copy has no scope, and a fusion's scope is its ops' one."""
    hlo = """HloModule jit_step, is_scheduled=true

%region_0.1 (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %add.1 = f32[] add(%a, %b), metadata={op_name="jit(step)/add"}
}

%fused_computation.2 (param_0: f32[8,100]) -> f32[100] {
  %param_0 = f32[8,100]{1,0} parameter(0)
  %constant.3 = f32[] constant(0)
  ROOT %reduce_sum.4 = f32[100]{0} reduce(%param_0, %constant.3), dimensions={0}, to_apply=%region_0.1, metadata={op_name="jit(step)/transpose(jvp(Model.nll))/vocab.nll/reduce_sum"}
}

ENTRY %main.5 (w: f32[8,100]) -> f32[100] {
  %w = f32[8,100]{1,0} parameter(0), metadata={op_name="state.params['w']"}
  %copy.6 = f32[8,100]{0,1} copy(%w), metadata={op_name="state.params['w']"}
  ROOT %ynn_fusion.7 = f32[100]{0} fusion(%copy.6), kind=kCustom, calls=%fused_computation.2
}
"""
    scopes = profile.op_scopes(hlo)
    assert scopes["ynn_fusion.7"] == ("Model.nll/vocab.nll", True)
    assert scopes["copy.6"] == (profile.OUTSIDE, False)


def test_bench_versus_times_two_configs_side_by_side_on_random_batches():
    """`bench --versus --synthetic`: a BERT config (masking with the mask id the data would give)
    whose data folder does not exist, against itself with 4 times the rows; those steps take longer."""
    tiny = ["data.dir=/nonexistent", "model.n_layer=1", "model.d_model=32", "model.n_head=2", "model.d_head=16",
            "model.d_inner=64", "model.vocab_size=500", "masking.max_predictions=5", "train.batch_size=2",
            "train.tgt_len=32"]
    config = config_lib.override(config_lib.load(str(REPO / "configs" / "bert" / "base.py")), tiny)
    larger = config_lib.override(copy.deepcopy(config), ["train.batch_size=8"])
    result = bench.compare(config, larger, steps=5, synthetic_data=True)
    assert result["synthetic_data"] and result["time_ratio"] < 1 and min(result["tokens_per_sec"]) > 0


@pytest.mark.parametrize("stream", [OrderedStream.batch_shapes(4, 8), ExampleStream.batch_shapes(4, 8, True),
                                    XLNetStream.batch_shapes(4, 8)], ids=["stream", "examples", "xlnet"])
def test_synthetic_batches_have_the_shapes_of_real_ones(stream):
    batch = synthetic.batch(stream, vocab_size=50, seed=0)
    assert {name: (x.shape, x.dtype) for name, x in batch.items()} == {
        name: (shape, np.dtype(dtype)) for name, (shape, dtype) in stream.items()}
    assert batch["tokens"].min() >= 0 and batch["tokens"].max() < 50 and len(np.unique(batch["tokens"])) > 10
    assert not np.array_equal(batch["tokens"], synthetic.batch(stream, vocab_size=50, seed=1)["tokens"])


def test_peak_flops_come_from_the_table_for_listed_accelerators_in_bfloat16(monkeypatch):
    class Device:
        platform = "gpu"

    for kind, peak in [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("TPU v5 lite", 197e12),
                       ("TPU v5p", 459e12)]:
        Device.device_kind = kind
        monkeypatch.setattr(bench.jax, "devices", lambda: [Device()])
        assert bench.peak_flops(bench.jnp.bfloat16)[0] == peak


def test_memory_speedup_bench_times_both_evaluations():
    """`bench --memory-speedup`: at attention length 32 the memory scores 16 tokens a call and the
    sliding window one, so per token the window is slower by far (21x measured on 2 busy cores)."""
    config = config_lib.override(config_lib.load(str(REPO / "configs" / "quickstart.py")),
                                 [arg.removeprefix("--config.") for arg in TINY] + ["model.vocab_size=100"])
    (row,) = bench.memory_speedup(config, [32], repeats=2)
    assert (row["attention_length"], row["segment"], row["memory"], row["batch"]) == (32, 16, 16, 2)
    assert row["speedup"] > 2 and row["ms_per_token_vanilla"] > 0
    assert "32        16 + 16" in bench.speedup_table([row])
