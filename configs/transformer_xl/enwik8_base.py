"""12-layer Transformer-XL on enwik8 (paper Table 2: 1.06 test bpc, 41M parameters).

The official PyTorch script `pytorch/run_enwik8_base.sh`: 12 layers, d_model 512, 8 heads of 64,
d_inner 2048, full softmax over the 204 byte values the official reading keeps (newline bytes are
dropped), dropout 0.1, dropatt 0; segments of 512 with 512 of memory, batch 22, Adam at 2.5e-4,
no warm-up, cosine to 0 over 400,000 steps, clip 0.25. Evaluation as the script's eval.py line:
tgt 80, mem 2100, clamp 820, same_length; reported in bits per character.

Command:   xlpretrain params --config configs/transformer_xl/enwik8_base.py
           xlpretrain train --config configs/transformer_xl/enwik8_base.py --workdir runs/enwik8_base \
               --config.data.dir=DIR   (DIR from `xlpretrain data download enwik8 --dir DIR`)
Hardware:  the authors': 4 GPUs. Not run here.
Runtime:   400,000 steps. Not measured here.
Expected:  `params` prints 41,055,436 (the official code's count). Test bpc 1.06 (paper).
"""

from xlpretrain.config import defaults


def get_config():
    config = defaults()
    config.data.update(corpus="enwik8", dir="")
    config.model.update(vocab_size=204, n_layer=12, d_model=512, n_head=8, d_head=64, d_inner=2048,
                        dropout=0.1, dropatt=0.0, mem_len=512)
    config.train.update(batch_size=22, tgt_len=512, steps=400_000, lr=2.5e-4, warmup_steps=0,
                        log_every=200, eval_every=4000, checkpoint_every=4000)
    config.eval.update(batch_size=10, tgt_len=80, mem_len=2100, clamp_len=820, same_length=True)
    return config
