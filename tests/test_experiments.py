"""The research scripts under experiments/ run against the package as it is."""

import runpy
import sys

from conftest import REPO


def test_attention_versions_times_the_layer_against_itself(monkeypatch, capsys):
    script, layer = REPO / "experiments" / "attention_versions.py", REPO / "xlpretrain" / "models" / "attention.py"
    monkeypatch.setattr(sys, "argv", [str(script), str(layer), str(layer), "--pairs", "2"])
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert "largest gradient difference 0.00e+00" in printed and "times as long (median over pairs)" in printed
