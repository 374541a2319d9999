"""The same training on any mesh: for every objective, 3 steps from the same seed give the same
losses on 1 device and on the meshes of 8 CPU devices data=8, 2 x 2 x 2 (data, fsdp, tensor) and
tensor=8 (tests/mesh_losses.py runs them in processes of their own, since the device count is fixed
when JAX starts). fsdp=8 is left to tests/test_multihost.py, which trains `ar` on it, and
data=2 x fsdp=4 (whose code 2 x 2 x 2 runs) to the suite's 10 minutes."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, cli_env

ONE = {"data": 1, "fsdp": 1, "tensor": 1}
MIXED = {"data": 2, "fsdp": 2, "tensor": 2}
ALL_MESHES = [{"data": 8, "fsdp": 1, "tensor": 1}, MIXED, {"data": 1, "fsdp": 1, "tensor": 8}]
SMALL = ["--config.model.n_layer=1", "--config.model.d_model=32", "--config.model.n_head=8", "--config.model.d_head=4",
         "--config.model.d_inner=64", "--config.train.batch_size=8", "--config.train.warmup_steps=2",
         "--config.eval.batch_size=8"]
ENCODER = SMALL + ["--config.data.dir={data}", "--config.data.wordpiece.vocab_size=1000",
                   "--config.masking.max_predictions=5", "--config.train.tgt_len=32", "--config.eval.tgt_len=32"]
# ELECTRA's generator has d_model // 64 heads: 512 wide gives the 8 that tensor=8 splits.
CASES = {
    "ar": ("configs/quickstart.py", SMALL + [
        "--config.data.quickstart.train_tokens=20000", "--config.data.quickstart.valid_tokens=2000",
        "--config.data.quickstart.test_tokens=2000", "--config.model.dropout=0.1", "--config.model.mem_len=8",
        "--config.train.tgt_len=8"]),
    "mlm": ("configs/bert/large.py:cpu", ENCODER + ["--config.masking.whole_word=True"]),
    "rtd": ("configs/electra/small.py:cpu", ENCODER + [
        "--config.model.d_model=512", "--config.model.d_head=64", "--config.model.d_embed=16",
        "--config.rtd.generator_size=1.0"]),
    "plm": ("configs/xlnet/base.py:cpu", ENCODER + [
        "--config.data.sentencepiece.vocab_size=504", "--config.model.reuse_len=16", "--config.model.mem_len=24",
        "--config.eval.mem_len=24", "--config.plm.perm_size=8"]),
}
# Three processes at once (one device; 8 devices for two objectives each), since each spends most
# of its time compiling on one core.
PROCESSES = [(1, ["ar", "mlm", "rtd", "plm"], [ONE]), (8, ["ar", "rtd"], ALL_MESHES), (8, ["mlm", "plm"], ALL_MESHES)]


@pytest.fixture(scope="module")
def losses(small_wikitext, cache_dir) -> dict:
    cases = {name: [name, spec, [a.format(data=small_wikitext) for a in args]] for name, (spec, args) in CASES.items()}
    processes = [subprocess.Popen([sys.executable, str(REPO / "tests" / "mesh_losses.py"),
                                   json.dumps([cases[name] + [meshes] for name in names])], cwd=REPO,
                                  env=cli_env(cache_dir, devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for devices, names, meshes in PROCESSES]
    result = {}
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        for line in map(json.loads, stdout.splitlines()):
            result[line["case"], json.dumps(line["mesh"], sort_keys=True)] = line
    return result


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_every_mesh_trains_as_one_device(name, losses):
    reference = np.asarray(losses[name, json.dumps(ONE, sort_keys=True)]["losses"])
    assert len(reference) == 3 and np.all(np.isfinite(reference))
    for mesh in ALL_MESHES:
        got = np.asarray(losses[name, json.dumps(mesh, sort_keys=True)]["losses"])
        np.testing.assert_allclose(got, reference, rtol=1e-5, err_msg=f"{name} on {mesh}")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_the_train_step_compiles_once(name, losses):
    """The first step compiles the train step (`jit(step)`) once and nothing else; steps 2 and 3
    compile nothing at all, on one device and on every mesh."""
    for mesh in [ONE] + ALL_MESHES:
        compilations = losses[name, json.dumps(mesh, sort_keys=True)]["compilations"]
        assert compilations == [{"jit(step)": 1}, {}, {}], mesh
