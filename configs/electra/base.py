"""ELECTRA-Base (Clark et al. 2020): replaced-token detection with a generator 1/3 the size.

Command:   xlpretrain params --config configs/electra/base.py
           xlpretrain train --config configs/electra/base.py --workdir runs/electra_base   (data as
           in configs/electra/small.py)
           xlpretrain train --config configs/electra/base.py:cpu --workdir runs/electra_base_cpu
Hardware:  full run: 16 TPUv3 chips in the paper; cpu variant: 2 CPU cores.
Runtime:   full run: 766K steps of 256 x 512 tokens, not run here. The cpu variant (2 layers x 128,
           embeddings 64, 300 steps of 16 x 128) is a quick check, a few minutes.
Expected:  `params` prints the discriminator as HuggingFace counts ElectraForPreTraining
           (109,483,009, google/electra-base-discriminator) and the generator (256 wide, 4 heads):
           33,740,602 as HuggingFace counts ElectraForMaskedLM.
"""

from xlpretrain.config import bert_encoder, cpu_variant, defaults, electra_pretraining


def get_config(arg: str = ""):
    config = defaults()
    bert_encoder(config, n_layer=12, d_model=768, n_head=12)
    electra_pretraining(config, lr=2e-4, batch_size=256, seq_len=512, steps=766_000, mask_prob=0.15,
                        generator_size=1 / 3)
    if arg == "cpu":
        cpu_variant(config, n_layer=2, d_model=128, n_head=2, d_embed=64, batch_size=16, steps=300)
    return config
