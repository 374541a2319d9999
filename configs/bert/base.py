"""BERT-Base (Devlin et al. 2019): masked LM + next-sentence prediction, the paper's hyperparameters.

Command:   xlpretrain params --config configs/bert/base.py
           xlpretrain train --config configs/bert/base.py --workdir runs/bert_base   (full run; set
           data.dir to a corpus in BERT's format, one sentence a line and a blank line between
           documents, and data.wordpiece.vocab_file to BERT's uncased vocab.txt of 30,522 pieces)
           xlpretrain train --config configs/bert/base.py:cpu --workdir runs/bert_cpu
Hardware:  full run: the paper's 16 Cloud TPUs; cpu variant: 2 CPU cores.
Runtime:   full run: 1M steps of 256 x 128 tokens, 4 days in the paper, not run here.
           cpu variant (4 layers x 256 on WikiText-2 read as documents, WordPiece vocabulary of 8,192
           trained on its train split, 300 steps of 32 x 128 tokens): 7 min 18 s from
           the command to the test line (WordPiece vocabulary already cached; 2026-12-03).
Expected:  `params` prints the encoder (108,891,648), the MLM head (622,650), the pooler (590,592)
           and the next-sentence classifier (1,538): encoder + pooler = 109,482,240, HuggingFace's
           BertModel (bert-base-uncased); all four = 110,106,428, BertForPreTraining.
           cpu variant: masked-LM accuracy 0.093 on valid and 0.095 on test (perplexity 702
           and 684 over the masked positions); next-sentence accuracy 0.53, still at chance.
"""

from xlpretrain.config import bert_encoder, bert_pretraining, cpu_variant, defaults


def get_config(arg: str = ""):
    config = defaults()
    bert_encoder(config, n_layer=12, d_model=768, n_head=12)
    bert_pretraining(config)
    if arg == "cpu":
        cpu_variant(config, n_layer=4, d_model=256, n_head=4, d_embed=0, batch_size=32, steps=300)
    return config
