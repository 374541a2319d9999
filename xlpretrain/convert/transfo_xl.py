"""HuggingFace `TransfoXLLMHeadModel` weights -> xlpretrain `TransformerXL` params.

HuggingFace's port keeps the official PyTorch code's module layout, so this also documents how the
official weights map onto ours. Only the tied full softmax (no cutoffs, d_embed = d_model) is
covered; models with adaptive input/softmax need `models/softmax.py` to grow those layers first.
"""

from collections.abc import Mapping

import numpy as np

from xlpretrain.errors import UserError
from xlpretrain.models.transformer import TransformerXLConfig


def from_hf_state_dict(state: Mapping[str, np.ndarray], config: TransformerXLConfig) -> dict:
    """`state`: parameter name -> array, as `{k: v.numpy() for k, v in model.state_dict().items()}`."""
    if "crit.cluster_weight" in state or "transformer.word_emb.emb_projs.0" in state:
        raise UserError("this checkpoint uses an adaptive softmax, which xlpretrain cannot load yet")
    h, e, d = config.n_head, config.d_head, config.d_model

    def bias_pair(prefix):
        return state[prefix + "r_w_bias"], state[prefix + "r_r_bias"]

    params = {
        "embed": {"vocab": {"embedding": state["transformer.word_emb.emb_layers.0.weight"],
                            "bias": state["crit.out_layers.0.bias"]}},
    }
    if config.untie_r:
        pairs = [bias_pair(f"transformer.layers.{i}.dec_attn.") for i in range(config.n_layer)]
        params["r_w_bias"] = np.stack([w for w, _ in pairs])
        params["r_r_bias"] = np.stack([r for _, r in pairs])
    else:
        params["r_w_bias"], params["r_r_bias"] = bias_pair("transformer.")

    for i in range(config.n_layer):
        p = f"transformer.layers.{i}."
        # qkv_net.weight is [3 * n_head * d_head, d_model], rows ordered (q|k|v, head, dim).
        qkv = state[p + "dec_attn.qkv_net.weight"].reshape(3, h, e, d)
        params[f"layer_{i}"] = {
            "attn": {
                "q": qkv[0].transpose(2, 0, 1),
                "kv": qkv[1:].transpose(3, 0, 1, 2),
                "r": state[p + "dec_attn.r_net.weight"].T.reshape(d, h, e),
                "o": state[p + "dec_attn.o_net.weight"].T.reshape(h, e, d),
            },
            "norm_attn": {"scale": state[p + "dec_attn.layer_norm.weight"],
                          "bias": state[p + "dec_attn.layer_norm.bias"]},
            "ff": {
                "inner": {"kernel": state[p + "pos_ff.CoreNet.0.weight"].T, "bias": state[p + "pos_ff.CoreNet.0.bias"]},
                "outer": {"kernel": state[p + "pos_ff.CoreNet.3.weight"].T, "bias": state[p + "pos_ff.CoreNet.3.bias"]},
            },
            "norm_ff": {"scale": state[p + "pos_ff.layer_norm.weight"],
                        "bias": state[p + "pos_ff.layer_norm.bias"]},
        }
    return params
