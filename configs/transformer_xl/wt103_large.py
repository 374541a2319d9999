"""Transformer-XL Large on WikiText-103 (paper Table 1: 18.3 test ppl, "257M" parameters).

The official PyTorch script `pytorch/run_wt103_large.sh`: 18 layers, d_model 1024, 16 heads of
64, d_inner 4096, adaptive input and softmax with cutoffs 20,000/40,000/200,000 and div_val 4 (bin
widths 1024/256/64/16, a projection per bin, the tail bins' output projections tied to the input
ones), dropout 0.2, dropatt 0.2; segments of 384 with 384 of memory, batch 128, Adam at 2.5e-4,
16,000 warm-up steps, cosine to 0 over 4,000,000 steps (kimiyoung/transformer-xl#114 suspects a
typo: about 1,900 epochs), clip 0.25. Evaluation as the script: tgt 128, mem 1600, clamp 1000,
same_length.

The official code builds 285,170,506 parameters with this config, not the paper's 257M (a
16-layer model would give 257.9M; the gap is unexplained, ../shared/reference/transformer_xl.md
section 4.2). The released model (the TF code's, untie_r) has one r_w_bias/r_r_bias per layer:
285,205,322 parameters. To score it, with HuggingFace's `transfo-xl-wt103` in HF_DIR:
    xlpretrain eval --hf HF_DIR --config configs/transformer_xl/wt103_large.py \
        --config.model.untie_r=True --config.data.dir=DIR --split test

Command:   xlpretrain params --config configs/transformer_xl/wt103_large.py
           xlpretrain train --config configs/transformer_xl/wt103_large.py --workdir runs/wt103_large \
               --config.data.dir=DIR
Hardware:  the authors: 64 TPU v3 cores (tf/README.md). Not run here.
Runtime:   4,000,000 steps; 1.3 s a step on 16 V100s for the PyTorch script
           (kimiyoung/transformer-xl#114), about two months. Not measured here.
Expected:  `params` prints 285,170,506. Test ppl 18.3 (paper; the released model under the
           official TF evaluation).
"""

from xlpretrain.config import defaults


def get_config():
    config = defaults()
    config.data.update(corpus="wt103", dir="")
    config.model.update(vocab_size=267_735, n_layer=18, d_model=1024, n_head=16, d_head=64, d_inner=4096,
                        dropout=0.2, dropatt=0.2, mem_len=384, cutoffs=(20_000, 40_000, 200_000), div_val=4,
                        tie_projs=(False, True, True, True))
    config.train.update(batch_size=128, tgt_len=384, steps=4_000_000, lr=2.5e-4, warmup_steps=16_000,
                        log_every=1000, eval_every=20_000, checkpoint_every=10_000)
    config.eval.update(batch_size=10, tgt_len=128, mem_len=1600, clamp_len=1000, same_length=True)
    return config
