"""24-layer Transformer-XL on text8 (paper Table 3: 1.08 test bpc, 277M parameters).

The official PyTorch script `pytorch/run_text8_large.sh` is enwik8_large.py's with the enwik8
hyperparameters reused untuned: the same model, training and evaluation, over text8's 27
characters and with no warm-up (the script passes none).

Command:   xlpretrain params --config configs/transformer_xl/text8_large.py
           xlpretrain train --config configs/transformer_xl/text8_large.py --workdir runs/text8_large \
               --config.data.dir=DIR   (DIR from `xlpretrain data download text8 --dir DIR`)
Hardware:  the authors: 32 TPU v3 cores with the TF code (tf/README.md). Not run here.
Runtime:   400,000 steps; 2 to 5 days per model on TPU (tf/README.md). Not measured here.
Expected:  `params` prints 277,050,395 (the official code's count). Test bpc 1.08 (paper).
"""

from pathlib import Path

from xlpretrain.config import load


def get_config():
    config = load(str(Path(__file__).with_name("enwik8_large.py")))
    config.data.corpus = "text8"
    config.model.vocab_size = 27
    config.train.warmup_steps = 0
    return config
