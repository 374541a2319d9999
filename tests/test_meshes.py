"""The same training on any mesh: 5 steps from the same seed give the same losses on 1 device and
on meshes of 8 CPU devices split over data, fsdp and tensor (tests/mesh_losses.py runs them in
processes of their own, since the device count is fixed when JAX starts)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, cli_env

ONE = {"data": 1, "fsdp": 1, "tensor": 1}
MIXED = {"data": 2, "fsdp": 2, "tensor": 2}
ALL_MESHES = [{"data": 8, "fsdp": 1, "tensor": 1}, {"data": 2, "fsdp": 4, "tensor": 1}, MIXED,
              {"data": 1, "fsdp": 8, "tensor": 1}, {"data": 1, "fsdp": 1, "tensor": 8}]
SMALL = ["--config.model.n_layer=1", "--config.model.d_model=32", "--config.model.n_head=8", "--config.model.d_head=4",
         "--config.model.d_inner=64", "--config.train.batch_size=8", "--config.train.warmup_steps=2",
         "--config.eval.batch_size=8"]
ENCODER = SMALL + ["--config.data.dir={data}", "--config.data.wordpiece.vocab_size=1000",
                   "--config.masking.max_predictions=5", "--config.train.tgt_len=32", "--config.eval.tgt_len=32"]
# ar on every mesh; the encoder objectives on the mesh that splits along all three axes at once.
# ELECTRA's generator has d_model // 64 heads, so its case is 128 wide (2 generator heads).
CASES = {
    "ar": ("configs/quickstart.py", SMALL + [
        "--config.data.quickstart.train_tokens=20000", "--config.data.quickstart.valid_tokens=2000",
        "--config.data.quickstart.test_tokens=2000", "--config.model.dropout=0.1", "--config.model.mem_len=8",
        "--config.train.tgt_len=8"], ALL_MESHES),
    "mlm": ("configs/bert/large.py:cpu", ENCODER + ["--config.masking.whole_word=True"], [MIXED]),
    "rtd": ("configs/electra/small.py:cpu", ENCODER + [
        "--config.model.d_model=128", "--config.model.d_head=16", "--config.model.d_embed=16",
        "--config.rtd.generator_size=1.0"], [MIXED]),
    "plm": ("configs/xlnet/base.py:cpu", ENCODER + [
        "--config.data.sentencepiece.vocab_size=504", "--config.model.reuse_len=16", "--config.model.mem_len=24",
        "--config.eval.mem_len=24", "--config.plm.perm_size=8"], [MIXED]),
}


def _losses(cases: list, devices: int, cache_dir) -> dict:
    result = subprocess.run([sys.executable, str(REPO / "tests" / "mesh_losses.py"), json.dumps(cases)], cwd=REPO,
                            env=cli_env(cache_dir, devices), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return {(line["case"], json.dumps(line["mesh"], sort_keys=True)): line["losses"] for line in lines}


@pytest.fixture(scope="module")
def losses(small_wikitext, cache_dir) -> dict:
    cases = {name: [name, spec, [a.format(data=small_wikitext) for a in args]] for name, (spec, args, _) in CASES.items()}
    return {**_losses([case + [[ONE]] for case in cases.values()], 1, cache_dir),
            **_losses([cases[name] + [CASES[name][2]] for name in CASES], 8, cache_dir)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_every_mesh_trains_as_one_device(name, losses):
    reference = np.asarray(losses[name, json.dumps(ONE, sort_keys=True)])
    assert len(reference) == 5 and np.all(np.isfinite(reference))
    for mesh in CASES[name][2]:
        got = np.asarray(losses[name, json.dumps(mesh, sort_keys=True)])
        np.testing.assert_allclose(got, reference, rtol=1e-5, err_msg=f"{name} on {mesh}")
