"""ELECTRA-Large (Clark et al. 2020): replaced-token detection with a generator 1/4 the size and
25% of the tokens masked.

Command:   xlpretrain params --config configs/electra/large.py
           xlpretrain train --config configs/electra/large.py --workdir runs/electra_large   (data
           as in configs/electra/small.py)
           xlpretrain train --config configs/electra/large.py:cpu --workdir runs/electra_large_cpu
Hardware:  full run: TPUv3 pods in the paper; cpu variant: 2 CPU cores.
Runtime:   full run: 400K steps of 2048 x 512 tokens (the released model 1.75M), not run here. The
           cpu variant (2 layers x 128, 300 steps of 16 x 128) is a quick check, a few minutes.
Expected:  `params` prints the discriminator as HuggingFace counts ElectraForPreTraining
           (335,142,913, google/electra-large-discriminator) and the generator (256 wide, 4 heads):
           51,295,290 as HuggingFace counts ElectraForMaskedLM.
"""

from xlpretrain.config import bert_encoder, cpu_variant, defaults, electra_pretraining


def get_config(arg: str = ""):
    config = defaults()
    bert_encoder(config, n_layer=24, d_model=1024, n_head=16)
    electra_pretraining(config, lr=2e-4, batch_size=2048, seq_len=512, steps=400_000, mask_prob=0.25,
                        generator_size=0.25)
    if arg == "cpu":
        cpu_variant(config, n_layer=2, d_model=128, n_head=2, d_embed=0, batch_size=16, steps=300)
    return config
