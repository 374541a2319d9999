"""A small Transformer-XL on Penn Treebank (Mikolov's word-level version, ../shared/data/ptb).

The cpu variant of ptb.py (4 layers, d_model 256, 8 heads of 32, d_inner 1024, segment 64 with a
memory of 64, batch 16, dropout 0.2, full softmax over the 10,000 words) for 2,800 steps (2.87M
tokens, 3.1 epochs of the 929,589-token training split), with the files read as plain text
(data.corpus "text": the same 10,000 words and <eos>, the vocabulary counted on train alone, so
ids in another order than the official reading of corpus "ptb"), as when it was measured.
Sized to train within 30 minutes on 2 CPU cores; the paper's 54.5 needs a 24M-parameter model
and far longer training.

Command:   xlpretrain train --config configs/transformer_xl/ptb_small.py --workdir runs/ptb_small
Hardware:  2 CPU cores.
Runtime:   29 min 28 s on 2 CPU cores on 2026-12-02, a busy day for the machine (a median of 1,740
           tokens/s; 26 min 28 s at about 1,800 on 2026-11-22), evaluations included.
Expected:  valid perplexity 113.66, test 107.96 at step 2,800 (one run, seed 0, 2026-12-02). Earlier
           runs of the same config gave 112.54 / 107.44 with flax's dropout masks (those that
           --config.model.dropout_bits=32 draws) and 112.58 / 107.37 before the attention rewrite.
"""

from pathlib import Path

from xlpretrain.config import load


def get_config():
    config = load(f"{Path(__file__).with_name('ptb.py')}:cpu")
    config.data.update(corpus="text", train="ptb.train.txt", valid="ptb.valid.txt", test="ptb.test.txt")
    config.train.steps = 2800
    return config
