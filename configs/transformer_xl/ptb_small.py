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
Runtime:   26 min 28 s on 2 CPU cores (about 1,800 tokens/s, evaluations included).
Expected:  valid perplexity 112.54, test 107.44 at step 2,800 (one run, seed 0; an earlier
           run of the same config before the attention rewrite gave 112.58 / 107.37).
"""

from pathlib import Path

from xlpretrain.config import load


def get_config():
    config = load(f"{Path(__file__).with_name('ptb.py')}:cpu")
    config.data.update(corpus="text", train="ptb.train.txt", valid="ptb.valid.txt", test="ptb.test.txt")
    config.train.steps = 2800
    return config
