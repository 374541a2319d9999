"""Transformer-XL with an adaptive softmax on WikiText-2, sized for 2 CPU cores.

The wt103_base recipe (adaptive input and softmax, post-LayerNorm, Adam with a cosine, clip 0.25)
at CPU size: 4 layers, d_model 256, 8 heads of 32, d_inner 1024; the 33,278-word vocabulary cut at
2,000 and 10,000 with div_val 2 (bin widths 256/128/64, each projected to 256, the tails' output
projections tied to the input ones); segments of 64 with 64 of memory, batch 16, dropout 0.2,
lr 7e-4 with 200 warm-up steps, 5,000 steps (5.1M tokens, 2.5 epochs of the 2,088,628-token
training split). Evaluated as the official eval.py reads a split (10 columns, every token once).

Command:   xlpretrain train --config configs/transformer_xl/wt2.py --workdir runs/wt2
Hardware:  2 CPU cores.
Runtime:   42 min 55 s on 2 CPU cores (2,191 tokens/s median, evaluations included), 2026-12-02.
           --config.model.tail_capacity="(0.25,0.125)" computes the same losses; without it a step
           took 1.26 times as long (`xlpretrain bench --versus`, README). The figures here were
           run without it.
Expected:  valid perplexity 146.05, test 136.28 at step 5,000 (one run, seed 0, 16-bit dropout
           masks; valid 294.5, 208.3, 179.1, 151.3 at steps 1,000 to 4,000); 143.93 / 134.00 on
           2026-12-01 with flax's masks (model.dropout_bits=32). Published reference: AWD-LSTM 65.6 test
           ppl without fine-tuning (Merity et al. 2017), a 33M-parameter LSTM.
"""

from xlpretrain.config import defaults


def get_config():
    config = defaults()
    config.data.update(corpus="wt2", dir="../shared/data/wikitext-2")
    config.model.update(n_layer=4, d_model=256, n_head=8, d_head=32, d_inner=1024, dropout=0.2, dropatt=0.0,
                        mem_len=64, cutoffs=(2000, 10_000), div_val=2, tie_projs=(False, True, True))
    config.train.update(batch_size=16, tgt_len=64, steps=5000, lr=7e-4, warmup_steps=200,
                        log_every=50, eval_every=1000, checkpoint_every=500)
    config.eval.update(batch_size=10, tgt_len=64, mem_len=64)
    return config
