"""The small benchmark model: the Transformer-XL that the speed figures in README.md refer to.

4 layers, d_model 256, 8 heads of 32, d_inner 1024, segment 128 with a memory of 128, batch 8,
vocabulary 10,000 (Penn Treebank), dropout 0.1, float32, full softmax. The official PyTorch code
trains this model at about 1,600 tokens/s on 2 CPU cores of the project's machine class
(../shared/reference/transformer_xl.md section 4.3); the official code builds it with 5,987,600
parameters, as `xlpretrain params` prints.

Command:   xlpretrain bench --config configs/transformer_xl/bench_small.py --steps 30
Hardware:  2 CPU cores.
Runtime:   about 30 s (6 s of compilation, 33 steps).
Expected:  1,250 to 2,900 tokens/s on 2 CPU cores depending on the machine's load (2,381 to 2,403 in
           a quiet period on 2026-11-22; on 2026-12-02 1,257 to 1,704 in eight runs in the morning
           and, after the 16-bit dropout masks, 1,952 to 2,880 in the evening; on 2026-12-03, at
           cd282e6, 1,903 to 2,502 on a slower machine, and at f752283 1,806 to 2,401), about 2
           times the official PyTorch code measured beside it: a median ratio of 1.97 over ten
           rounds on 2026-12-02, and on 2026-12-03 of 2.00 (1.76 to 2.22) over ten in the morning
           and of 1.88 (1.56 to 2.14) over ten in the afternoon (see experiments/README.md).
"""

from xlpretrain.config import defaults


def get_config():
    config = defaults()
    config.data.update(dir="../shared/data/ptb", train="ptb.train.txt", valid="ptb.valid.txt", test="ptb.test.txt")
    config.model.update(vocab_size=10_000, n_layer=4, d_model=256, n_head=8, d_head=32, d_inner=1024,
                        dropout=0.1, dropatt=0.0, mem_len=128)
    config.train.update(batch_size=8, tgt_len=128)
    config.eval.update(tgt_len=128, mem_len=128)
    return config
