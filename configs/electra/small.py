"""ELECTRA-Small (Clark et al. 2020): replaced-token detection with a generator 1/4 the size.

Command:   xlpretrain params --config configs/electra/small.py
           xlpretrain train --config configs/electra/small.py --workdir runs/electra_small   (full
           run; data.dir and data.wordpiece.vocab_file as in configs/bert/base.py)
           xlpretrain train --config configs/electra/small.py:cpu --workdir runs/electra_cpu
Hardware:  full run: one V100 in the paper; cpu variant: 2 CPU cores.
Runtime:   full run: 1M steps of 128 x 128 tokens, 4 days in the paper, not run here.
           cpu variant (a 4-layer discriminator, 256 wide with embeddings of 128, and its 1/4
           generator, on WikiText-2 read as documents with a WordPiece vocabulary of 8,192 trained
           on its train split, 300 steps of 32 x 128 tokens): 8 min 9 s from the
           command to the test line (vocabulary cached; 2026-12-03).
Expected:  `params` prints the discriminator as HuggingFace counts ElectraForPreTraining
           (13,549,057, google/electra-small-discriminator) and the generator (64 wide, 1 head, the
           paper's 1/4): 647,162 of its own, 4,620,026 as HuggingFace counts ElectraForMaskedLM.
           cpu variant: generator MLM accuracy 0.105 valid, 0.107 test; discriminator accuracy
           0.854 with 14.6% of the tokens replaced, i.e. it has barely begun to separate them
           (precision 0.67, recall 0.005 on valid).
"""

from xlpretrain.config import bert_encoder, cpu_variant, defaults, electra_pretraining


def get_config(arg: str = ""):
    config = defaults()
    bert_encoder(config, n_layer=12, d_model=256, n_head=4, d_embed=128)
    electra_pretraining(config, lr=5e-4, batch_size=128, seq_len=128, steps=1_000_000, mask_prob=0.15,
                        generator_size=0.25)
    if arg == "cpu":
        cpu_variant(config, n_layer=4, d_model=256, n_head=4, d_embed=128, batch_size=32, steps=300)
    return config
