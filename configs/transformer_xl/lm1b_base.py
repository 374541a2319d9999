"""Transformer-XL Base on the One Billion Word benchmark (paper Table 4: 23.5 test ppl, 0.46B).

The paper's base model is neither official script: per the authors (kimiyoung/transformer-xl#69)
it had 20 layers, d_model 1024 and d_inner 6144; the rest follows `pytorch/run_lm1b_base.sh`:
8 heads of 128, adaptive input and softmax with cutoffs 60,000/100,000/640,000, div_val 4 and
no projection tied, dropout 0, dropatt 0; segments of 32 with 32 of memory (sentences are
shuffled, so memory reaches into unrelated sentences), batch 224, Adam at 2.5e-4, 20,000
warm-up steps, cosine to 0 over 500,000 steps, clip 0.25. Evaluation as the script's eval.py
line: tgt 32, mem 128, no clamp, same_length, 64 columns. The PyTorch script itself (18 layers,
d_inner 4096) is this config with --config.model.n_layer=18 --config.model.d_inner=4096.

Command:   xlpretrain params --config configs/transformer_xl/lm1b_base.py
           xlpretrain train --config configs/transformer_xl/lm1b_base.py --workdir runs/lm1b_base \
               --config.data.dir=DIR   (DIR from `xlpretrain data download lm1b --dir DIR`)
Hardware:  the authors': GPUs (the PyTorch script uses 4 with --multi_gpu). Not run here.
Runtime:   500,000 steps. Not measured here.
Expected:  `params` prints 469,020,513 with the vocabulary of 793,470 words (the line count of
           1b_word_vocab.txt); the official code builds the same count. Test ppl 23.5 (paper);
           kimiyoung/transformer-xl#69 reports 30.25 with the 18-layer script.
"""

from xlpretrain.config import defaults


def get_config():
    config = defaults()
    config.data.update(corpus="lm1b", dir="")
    config.model.update(vocab_size=793_470, n_layer=20, d_model=1024, n_head=8, d_head=128, d_inner=6144,
                        dropout=0.0, dropatt=0.0, mem_len=32, cutoffs=(60_000, 100_000, 640_000), div_val=4,
                        tie_projs=(False, False, False, False))
    config.train.update(batch_size=224, tgt_len=32, steps=500_000, lr=2.5e-4, warmup_steps=20_000,
                        log_every=1000, eval_every=20_000, checkpoint_every=10_000)
    config.eval.update(batch_size=64, tgt_len=32, mem_len=128, clamp_len=-1, same_length=True)
    return config
