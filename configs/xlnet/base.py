"""XLNet-Base (Yang et al. 2019): permutation LM with two-stream attention at BERT-Base size.

Command:   xlpretrain params --config configs/xlnet/base.py
           xlpretrain train --config configs/xlnet/base.py --workdir runs/xlnet_base \
               --config.data.dir=DIR --config.data.sentencepiece.model_file=spiece.model
           (data as in configs/xlnet/large.py)
           xlpretrain train --config configs/xlnet/base.py:cpu --workdir runs/xlnet_cpu
Hardware:  full run: TPU v3 (not stated for Base); cpu variant: 2 CPU cores.
Runtime:   full run: the paper gives no Base pretraining recipe (zihangdai/xlnet#36 and #137
           were not answered); this uses the one its fair comparison with BERT took from BERT
           (batch 256, 1M steps, lr 1e-4, 10K warm-up steps, linear decay) with XLNet's sequences
           of 512 and permutation settings. Not run here.
           cpu variant (4 layers x 256, 5.5M parameters, SentencePiece 8,000 trained on
           WikiText-2's train split, 300 steps of 16 x 128 pieces with bi_data, 64 reused,
           memory 96, 21 targets per row): 9 min 27 s from the command to the test line
           (vocabulary cached; 2026-12-03).
Expected:  `params` prints 116,750,336 = the transformer 116,718,336 + lm_loss.bias 32,000, the
           count of HuggingFace's XLNetLMHeadModel (xlnet-base-cased config; 116.75M in the
           reference). cpu variant: PLM loss 6.104 valid (target accuracy 0.106), 6.052 test
           (0.109); the train split's unigram entropy is 6.38 nats, so 300 steps learn little
           beyond piece frequencies. With --config.train.steps=1500 (39 min 31 s): valid 4.670
           (0.280), test 4.602 (0.285).
"""

from xlpretrain.config import defaults, xlnet_cpu_variant, xlnet_model, xlnet_pretraining


def get_config(arg: str = ""):
    config = defaults()
    xlnet_model(config, n_layer=12, d_model=768, n_head=12)
    xlnet_pretraining(config, batch_size=256, steps=1_000_000, lr=1e-4, warmup_steps=10_000)
    if arg == "cpu":
        xlnet_cpu_variant(config, steps=300)
    return config
