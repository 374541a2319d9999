"""The paper configs (configs/transformer_xl/) build exactly the models of the official code:
`xlpretrain params` prints the parameter counts that the official PyTorch code builds for the same
scripts (../shared/reference/transformer_xl.md section 4.2)."""

import sys

from conftest import run_cli

OFFICIAL_COUNTS = {
    "wt103_base": 151_107_538,
    "wt103_large": 285_170_506,   # the paper says 257M; the official code builds this
    "enwik8_base": 41_055_436,
    "enwik8_large": 277_231_820,
    "text8_large": 277_050_395,
    "lm1b_base": 469_020_513,     # the paper's 20-layer model (kimiyoung/transformer-xl#69), 793,470 words
    "lm1b_large": 841_295_961,
}


def test_params_prints_the_official_counts(cache_dir):
    # One process for all configs: `xlpretrain params` for each, as a user runs it.
    driver = ("import sys; from xlpretrain.cli import main\n"
              "for name in sys.argv[1:]:\n"
              "    print('config', name, flush=True)\n"
              "    main(['params', '--config', f'configs/transformer_xl/{name}.py'])\n")
    out = run_cli(list(OFFICIAL_COUNTS), cache_dir, python=[sys.executable, "-c", driver]).stdout
    totals, name = {}, None
    for line in out.splitlines():
        if line.startswith("config "):
            name = line.split()[1]
        elif line.strip().endswith("total"):
            totals[name] = int(line.split()[0].replace(",", ""))
    assert totals == OFFICIAL_COUNTS


def test_released_wt103_layout_counts_the_tf_code_per_layer_biases(cache_dir):
    """The released WikiText-103 model is the TF code's, with untie_r: 285,205,322 parameters."""
    out = run_cli(["params", "--config", "configs/transformer_xl/wt103_large.py", "--config.model.untie_r=True"],
                  cache_dir).stdout
    assert out.strip().splitlines()[-1].split()[0] == "285,205,322"
