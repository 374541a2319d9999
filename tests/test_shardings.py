"""Golden shardings: how every parameter of a reference model (wt2.py: adaptive input and softmax)
is split over a 2 x 2 x 2 mesh (data, fsdp, tensor) is checked in, so that a change of the sharding
rules or of a module's axis names shows up as a diff of tests/golden/shardings_wt2.txt. After a
deliberate change, regenerate the file with GOLDEN_COMMAND (8 fake CPU devices) and review the diff.
"""

import difflib

from conftest import REPO, run_cli

GOLDEN = REPO / "tests" / "golden" / "shardings_wt2.txt"
ARGS = ["params", "--config", "configs/transformer_xl/wt2.py", "--shardings", "--config.model.vocab_size=33278",
        "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2", "--config.eval.batch_size=8"]
GOLDEN_COMMAND = ("XLA_FLAGS=--xla_force_host_platform_device_count=8 xlpretrain " + " ".join(ARGS)
                  + f" > {GOLDEN.relative_to(REPO)}")


def test_parameter_shardings_match_the_checked_in_file(cache_dir):
    printed = run_cli(ARGS, cache_dir, devices=8).stdout
    expected = GOLDEN.read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(True), printed.splitlines(True), "golden", "printed"))
    assert printed == expected, f"parameter shardings changed; if deliberate, run\n  {GOLDEN_COMMAND}\n{diff}"
