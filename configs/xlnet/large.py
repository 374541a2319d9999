"""XLNet-Large (Yang et al. 2019): permutation LM with two-stream attention, the paper's recipe.

Command:   xlpretrain params --config configs/xlnet/large.py
           xlpretrain train --config configs/xlnet/large.py --workdir runs/xlnet_large \
               --config.data.dir=DIR --config.data.sentencepiece.model_file=spiece.model
           (DIR: train.txt, valid.txt, test.txt with one sentence a line and a blank line between
           documents; spiece.model: XLNet's released 32,000-piece vocabulary)
           xlpretrain train --config configs/xlnet/large.py:cpu --workdir runs/xlnet_large_cpu
Hardware:  full run: 512 TPU v3 chips in the paper; cpu variant: 2 CPU cores.
Runtime:   full run: 500K steps of 8,192 x 512 tokens, about 5.5 days in the paper (v2, Table 7:
           lr 4e-4, 40K warm-up steps, linear decay, Adam eps 1e-6, weight decay 0.01), not run
           here. Paper v1 and the README command used batch 2,048 instead. cpu variant: the small
           model of configs/xlnet/base.py:cpu.
Expected:  `params` prints 360,300,800 = the transformer 360,268,800 + lm_loss.bias 32,000, the
           count of HuggingFace's XLNetLMHeadModel (xlnet-large-cased config; 360.3M in the
           reference, 340M in some secondary sources, which is wrong).
"""

from xlpretrain.config import defaults, xlnet_cpu_variant, xlnet_model, xlnet_pretraining


def get_config(arg: str = ""):
    config = defaults()
    xlnet_model(config, n_layer=24, d_model=1024, n_head=16)
    xlnet_pretraining(config, batch_size=8192, steps=500_000, lr=4e-4, warmup_steps=40_000)
    if arg == "cpu":
        xlnet_cpu_variant(config, steps=300)
    return config
