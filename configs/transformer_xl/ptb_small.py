"""A small Transformer-XL on Penn Treebank (Mikolov's word-level version, ../shared/data/ptb).

4 layers, d_model 256, 8 heads of 32, d_inner 1024, segment 64 with a memory of 64, batch 16,
dropout 0.2, full softmax over the 10,000 words; 2,800 steps (2.87M tokens, 3.1 epochs of the 929,589-token training split).
Sized to train within 30 minutes on 2 CPU cores; the paper's 54.5 needs a 24M-parameter model
and far longer training.

Command:   xlpretrain train --config configs/transformer_xl/ptb_small.py --workdir runs/ptb_small
Hardware:  2 CPU cores.
Runtime:   26 min 28 s on 2 CPU cores (about 1,800 tokens/s, evaluations included).
Expected:  valid perplexity 112.54, test 107.44 at step 2,800 (one run, seed 0; an earlier
           run of the same config before the attention rewrite gave 112.58 / 107.37).
"""

from xlpretrain.config import defaults


def get_config():
    config = defaults()
    config.data.update(dir="../shared/data/ptb", train="ptb.train.txt", valid="ptb.valid.txt", test="ptb.test.txt")
    config.model.update(n_layer=4, d_model=256, n_head=8, d_head=32, d_inner=1024, dropout=0.2, dropatt=0.0,
                        mem_len=64)
    config.train.update(batch_size=16, tgt_len=64, steps=2800, lr=7e-4, warmup_steps=200,
                        log_every=50, eval_every=500, checkpoint_every=500)
    config.eval.update(tgt_len=64, mem_len=64)
    return config
