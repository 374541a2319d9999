"""BERT-Large (Devlin et al. 2019): masked LM + next-sentence prediction, the paper's hyperparameters.

Command:   xlpretrain params --config configs/bert/large.py
           xlpretrain train --config configs/bert/large.py --workdir runs/bert_large   (data as in
           configs/bert/base.py)
           xlpretrain train --config configs/bert/large.py:cpu --workdir runs/bert_large_cpu
Hardware:  full run: the paper's 64 Cloud TPU chips; cpu variant: 2 CPU cores.
Runtime:   full run: 1M steps of 256 x 128 tokens, 4 days in the paper, not run here. The cpu
           variant (2 layers x 128, 300 steps of 16 x 128) is a quick check, a few minutes.
Expected:  `params` prints the encoder (334,092,288), the MLM head (1,082,170), the pooler
           (1,049,600) and the next-sentence classifier (2,050): encoder + pooler = 335,141,888,
           HuggingFace's BertModel (bert-large-uncased); all four = 336,226,108, BertForPreTraining.
"""

from xlpretrain.config import bert_encoder, bert_pretraining, cpu_variant, defaults


def get_config(arg: str = ""):
    config = defaults()
    bert_encoder(config, n_layer=24, d_model=1024, n_head=16)
    bert_pretraining(config)
    if arg == "cpu":
        cpu_variant(config, n_layer=2, d_model=128, n_head=2, d_embed=0, batch_size=16, steps=300)
    return config
