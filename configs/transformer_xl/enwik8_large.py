"""24-layer Transformer-XL on enwik8 (paper Table 2: 0.99 test bpc, 277M parameters).

The official PyTorch script `pytorch/run_enwik8_large.sh`: 24 layers, d_model 1024, 8 heads of
128, d_inner 3072, full softmax over the 204 byte values the official reading keeps (newline bytes
are dropped), dropout 0.15, dropatt 0.15; segments of 768 with 768 of memory (the paper's "784"
is a typo), batch 64, Adam at 2.5e-4, 4,000 warm-up steps, cosine to 0 over 400,000 steps, clip
0.25. Evaluation as the script's eval.py line: tgt 128, mem 3800, clamp 1000, same_length;
reported in bits per character.

Command:   xlpretrain params --config configs/transformer_xl/enwik8_large.py
           xlpretrain train --config configs/transformer_xl/enwik8_large.py --workdir runs/enwik8_large \
               --config.data.dir=DIR   (DIR from `xlpretrain data download enwik8 --dir DIR`)
Hardware:  the authors: 32 TPU v3 cores with the TF code (tf/README.md). Not run here.
Runtime:   400,000 steps; 2 to 5 days per model on TPU (tf/README.md). Not measured here.
Expected:  `params` prints 277,231,820 (the official code's count). Test bpc 0.99 (paper).
"""

from xlpretrain.config import defaults


def get_config():
    config = defaults()
    config.data.update(corpus="enwik8", dir="")
    config.model.update(vocab_size=204, n_layer=24, d_model=1024, n_head=8, d_head=128, d_inner=3072,
                        dropout=0.15, dropatt=0.15, mem_len=768)
    config.train.update(batch_size=64, tgt_len=768, steps=400_000, lr=2.5e-4, warmup_steps=4000,
                        log_every=200, eval_every=4000, checkpoint_every=4000)
    config.eval.update(batch_size=10, tgt_len=128, mem_len=3800, clamp_len=1000, same_length=True)
    return config
