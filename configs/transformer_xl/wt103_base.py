"""Transformer-XL Standard on WikiText-103 (paper Table 1: 24.0 test ppl, 151M parameters).

The official PyTorch script `pytorch/run_wt103_base.sh` (the authors ran the base models with the
PyTorch code, kimiyoung/transformer-xl#1): 16 layers, d_model 410, 10 heads of 41, d_inner 2100,
adaptive input and softmax with cutoffs 20,000/40,000/200,000 and div_val 1 (d_embed = d_model,
so no projection), r_w_bias/r_r_bias shared by the layers, dropout 0.1, dropatt 0; segments of 150
with 150 of memory, batch 60, Adam at 2.5e-4 with no warm-up and a cosine to 0 over 200,000 steps,
clip 0.25. Evaluation as the script's eval.py line: tgt 64, mem 640, clamp 400, same_length, 10
columns.

Command:   xlpretrain params --config configs/transformer_xl/wt103_base.py
           xlpretrain train --config configs/transformer_xl/wt103_base.py --workdir runs/wt103_base \
               --config.data.dir=DIR   (DIR from `xlpretrain data download wt103 --dir DIR`)
           xlpretrain eval --workdir runs/wt103_base --split test
Hardware:  the authors': 4 GPUs (DataParallel). Not run here.
Runtime:   200,000 steps; 350 ms a step on 4 GPUs with DataParallel reported in
           kimiyoung/transformer-xl#66, about 19 hours. Not measured here.
Expected:  `params` prints 151,107,538 (the official code's count). Test ppl 24.0 (paper); the
           official code reaches 23.68 with this eval setting (kimiyoung/transformer-xl#99).
"""

from xlpretrain.config import defaults


def get_config():
    config = defaults()
    config.data.update(corpus="wt103", dir="")
    config.model.update(vocab_size=267_735, n_layer=16, d_model=410, n_head=10, d_head=41, d_inner=2100,
                        dropout=0.1, dropatt=0.0, mem_len=150, cutoffs=(20_000, 40_000, 200_000), div_val=1,
                        tie_projs=(False, True, True, True))
    config.train.update(batch_size=60, tgt_len=150, steps=200_000, lr=2.5e-4, warmup_steps=0,
                        log_every=200, eval_every=4000, checkpoint_every=4000)
    config.eval.update(batch_size=10, tgt_len=64, mem_len=640, clamp_len=400, same_length=True)
    return config
