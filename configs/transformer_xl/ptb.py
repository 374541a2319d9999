"""Transformer-XL on Penn Treebank (Mikolov's word-level version; paper Table 5: 54.52 test ppl, 24M).

The paper's PTB model came with no script or config (kimiyoung/transformer-xl#16: "mainly a
regularization game"; it used variational dropout and weight averaging, which xlpretrain does
not implement). This config is a guess sized to the paper's 24M parameters: the wt103_base block
(d_model 410, 10 heads of 41, d_inner 2100) with 8 layers and a full softmax over the 10,000
words, segments of 70 with 70 of memory, dropout 0.4, evaluated as the official eval.py with the
wt103_base evaluation settings (tgt 64, mem 640, clamp 400, same_length).

Command:   xlpretrain train --config configs/transformer_xl/ptb.py --workdir runs/ptb
           xlpretrain train --config configs/transformer_xl/ptb.py:cpu --workdir runs/ptb_cpu
Hardware:  full config: one GPU; cpu variant: 2 CPU cores.
Runtime:   full config: not run (no accelerator yet). cpu variant: 26 min 48 s on 2 CPU cores
           (2,693 tokens/s median, evaluations included), 2026-12-01, with flax's dropout masks;
           29 min 57 s (2,420 tokens/s, machine shared) on 2026-12-02 with the 16-bit masks.
Expected:  paper 54.52 (not expected from this config without the paper's regularisation);
           cpu variant (5,987,600 parameters, 4,000 steps, seed 0): valid perplexity 101.15, test
           96.16 with the 16-bit masks (the default); 100.84 / 95.78 with flax's masks
           (model.dropout_bits=32). Published references: Zaremba et al. 2014 small LSTM 114.5,
           AWD-LSTM 58.8 without fine-tuning.
"""

from xlpretrain.config import defaults


def get_config(arg: str = ""):
    config = defaults()
    config.data.update(corpus="ptb", dir="../shared/data/ptb")
    config.model.update(n_layer=8, d_model=410, n_head=10, d_head=41, d_inner=2100, dropout=0.4, dropatt=0.1,
                        mem_len=70)
    config.train.update(batch_size=20, tgt_len=70, steps=100_000, lr=2.5e-4, warmup_steps=0,
                        log_every=200, eval_every=4000, checkpoint_every=4000)
    config.eval.update(tgt_len=64, mem_len=640, clamp_len=400, same_length=True)
    if arg == "cpu":
        config.model.update(n_layer=4, d_model=256, n_head=8, d_head=32, d_inner=1024, dropout=0.2, dropatt=0.0,
                            mem_len=64)
        config.train.update(batch_size=16, tgt_len=64, steps=4000, lr=7e-4, warmup_steps=200,
                            log_every=50, eval_every=500, checkpoint_every=500)
        config.eval.update(tgt_len=64, mem_len=64, clamp_len=-1, same_length=False)
    return config
