"""HuggingFace `XLNetLMHeadModel` weights <-> the params of a `plm` run (flavor="xlnet"), both ways.

HuggingFace keeps XLNet's attention weights as [d_model, heads, head_dim] tensors (as the original
TensorFlow code), not torch Linear layers; its output projection `o` has that layout too, where
ours is [heads, head_dim, d_model]. Its `r_w_bias`, `r_r_bias`, `r_s_bias` are per layer (the
original's `untie_r=True`), ours stacked [n_layer, heads, head_dim]. The softmax is tied to the
word embedding (`lm_loss.weight` is not stored separately) with its own bias `lm_loss.bias`.
"""

from __future__ import annotations

from xlpretrain.convert.hf_bert import Entry, linear, norm


def lm_head_entries(n_layer: int) -> list[Entry]:
    """`XLNetLMHeadModel` <-> `TransformerXL(flavor="xlnet", untie_r=True)` params."""
    entries = [Entry(("transformer.word_embedding.weight",), ("embed", "vocab", "embedding")),
               Entry(("lm_loss.bias",), ("embed", "vocab", "bias")),
               Entry(("transformer.mask_emb",), ("mask_emb",))]
    for bias in ("r_w_bias", "r_r_bias", "r_s_bias"):
        entries.append(Entry(tuple(f"transformer.layer.{i}.rel_attn.{bias}" for i in range(n_layer)), (bias,)))
    for i in range(n_layer):
        p, attn = f"transformer.layer.{i}.", (f"layer_{i}", "attn")
        entries += [
            Entry((p + "rel_attn.q",), attn + ("q",)),
            Entry((p + "rel_attn.k", p + "rel_attn.v"), attn + ("kv",), stack_axis=1),
            Entry((p + "rel_attn.o",), attn + ("o",), transpose=(1, 2, 0)),
            Entry((p + "rel_attn.r",), attn + ("r",)),
            Entry((p + "rel_attn.seg_embed",), attn + ("seg",)),
            *norm(p + "rel_attn.layer_norm", (f"layer_{i}", "norm_attn")),
            *linear(p + "ff.layer_1", (f"layer_{i}", "ff", "inner")),
            *linear(p + "ff.layer_2", (f"layer_{i}", "ff", "outer")),
            *norm(p + "ff.layer_norm", (f"layer_{i}", "norm_ff")),
        ]
    return entries
