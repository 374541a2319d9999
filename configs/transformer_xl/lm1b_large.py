"""Transformer-XL Large on the One Billion Word benchmark (paper Table 4: 21.8 test ppl, 0.8B).

The official PyTorch script `pytorch/run_lm1b_large.sh`: 24 layers, d_model 1280, 16 heads of 80,
d_inner 8192, adaptive input and softmax with cutoffs 60,000/100,000/640,000, div_val 4 and no
projection tied, dropout 0.05, dropatt 0.05; segments of 32 with 32 of memory, batch 512, Adam
at 2.5e-4, 30,000 warm-up steps, cosine to 0 over 1,200,000 steps, clip 0.25. Evaluation as the
script: tgt 32, mem 128, no clamp, same_length, 8 columns. The released model is the TF code's
(untie_r, proj_same_dim=False: no projection for the 1280-wide head bin, lr 1e-4): import it with
--config.model.untie_r=True --config.model.proj_same_dim=False.

Command:   xlpretrain params --config configs/transformer_xl/lm1b_large.py
           xlpretrain train --config configs/transformer_xl/lm1b_large.py --workdir runs/lm1b_large \
               --config.data.dir=DIR
Hardware:  the authors: 512 TPU v3 cores with the TF code (tf/README.md). Not run here.
Runtime:   1,200,000 steps; 2 to 5 days on TPU (tf/README.md). Not measured here.
Expected:  `params` prints 841,295,961 with the vocabulary of 793,470 words (the official code's
           count). Test ppl 21.8 (paper).
"""

from xlpretrain.config import defaults


def get_config():
    config = defaults()
    config.data.update(corpus="lm1b", dir="")
    config.model.update(vocab_size=793_470, n_layer=24, d_model=1280, n_head=16, d_head=80, d_inner=8192,
                        dropout=0.05, dropatt=0.05, mem_len=32, cutoffs=(60_000, 100_000, 640_000), div_val=4,
                        tie_projs=(False, False, False, False))
    config.train.update(batch_size=512, tgt_len=32, steps=1_200_000, lr=2.5e-4, warmup_steps=30_000,
                        log_every=1000, eval_every=20_000, checkpoint_every=10_000)
    config.eval.update(batch_size=8, tgt_len=32, mem_len=128, clamp_len=-1, same_length=True)
    return config
