"""Transformer-XL weights of the official code's layout -> xlpretrain `TransformerXL` params.

`from_hf_state_dict` reads HuggingFace's `TransfoXLLMHeadModel` (the `transfo-xl-wt103` release),
which keeps the official PyTorch code's module names: `transformer.word_emb` is the
`AdaptiveEmbedding` (`emb_layers.i`, `emb_projs.i`), `crit` the `ProjectedAdaptiveLogSoftmax`
(`out_layers.i` tied to the embedding tables, `out_projs.i`, `cluster_weight`/`cluster_bias` in
the PyTorch order), `qkv_net` one [3 * heads * head_dim, d_model] matrix. A checkpoint whose output
tables are not the embedding tables is refused: xlpretrain always ties them.
"""

from collections.abc import Mapping

import numpy as np

from xlpretrain.errors import UserError
from xlpretrain.models.softmax import bins
from xlpretrain.models.transformer import TransformerXLConfig


def _vocab_params(state: Mapping[str, np.ndarray], config: TransformerXLConfig) -> dict:
    emb, crit = "transformer.word_emb.", "crit."
    layers = bins(config.vocab_size, config.embed_size, config.d_model, config.cutoffs, config.div_val,
                  config.tie_projs, config.proj_same_dim)
    tables = range(1) if config.div_val == 1 else range(len(layers))
    vocab = {}
    for i in tables:
        table = state[f"{emb}emb_layers.{i}.weight"]
        output = state.get(f"{crit}out_layers.{i}.weight", table)
        if not np.array_equal(output, table):
            raise UserError(f"{crit}out_layers.{i}.weight differs from the embedding table; xlpretrain ties them")
        vocab["embedding" if config.div_val == 1 else f"embedding_{i}"] = table
    vocab["bias"] = np.concatenate([state[f"{crit}out_layers.{i}.bias"] for i in tables])
    for i, layer in enumerate(layers):
        if layer.emb_proj:
            vocab[layer.emb_proj] = state[f"{emb}emb_projs.{i if config.div_val > 1 else 0}"]
        if layer.out_proj == layer.emb_proj or layer.out_proj == "emb_proj_0":  # tied (tie_projs[i])
            if f"{crit}out_projs.{i}" in state and not np.array_equal(state[f"{crit}out_projs.{i}"], vocab[layer.out_proj]):
                raise UserError(f"{crit}out_projs.{i} is not the input projection, but model.tie_projs[{i}] ties them")
        elif layer.out_proj:
            vocab[layer.out_proj] = state[f"{crit}out_projs.{i}"]
    if len(layers) > 1:
        vocab["cluster_weight"], vocab["cluster_bias"] = state[crit + "cluster_weight"], state[crit + "cluster_bias"]
    return vocab


def from_hf_state_dict(state: Mapping[str, np.ndarray], config: TransformerXLConfig) -> dict:
    """`state`: parameter name -> array, as `{k: v.numpy() for k, v in model.state_dict().items()}`."""
    h, e, d = config.n_head, config.d_head, config.d_model
    params = {"embed": {"vocab": _vocab_params(state, config)}}

    def bias_pair(prefix):
        return state[prefix + "r_w_bias"], state[prefix + "r_r_bias"]

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


def check_config(hf_config: dict, config: TransformerXLConfig) -> None:
    """Raises UserError naming the first field where a TransfoXLConfig (config.json) and ours differ."""
    tie_projs = hf_config.get("tie_projs") or (
        [False] + [hf_config.get("proj_share_all_but_first", False)] * len(hf_config.get("cutoffs", [])))
    bins_count = len(config.cutoffs) + 1
    pairs = (("n_layer", "n_layer", config.n_layer, hf_config.get("n_layer")),
             ("d_model", "d_model", config.d_model, hf_config.get("d_model")),
             ("n_head", "n_head", config.n_head, hf_config.get("n_head")),
             ("d_head", "d_head", config.d_head, hf_config.get("d_head")),
             ("d_inner", "d_inner", config.d_inner, hf_config.get("d_inner")),
             ("d_embed", "d_embed", config.embed_size, hf_config.get("d_embed")),
             ("vocab_size", "vocab_size", config.vocab_size, hf_config.get("vocab_size", hf_config.get("n_token"))),
             ("cutoffs", "cutoffs", list(config.cutoffs), list(hf_config.get("cutoffs", []))),
             ("div_val", "div_val", config.div_val, hf_config.get("div_val")),
             ("tie_projs", "tie_projs", list(config.tie_projs) + [False] * (bins_count - len(config.tie_projs)),
              list(tie_projs)),
             ("untie_r", "untie_r", config.untie_r, hf_config.get("untie_r")),
             ("pre_lnorm", "pre_lnorm", config.pre_lnorm, hf_config.get("pre_lnorm")))
    for key, ours, value, expected in pairs:
        if value != expected:
            raise UserError(f"config.json has {key}={expected} but the xlpretrain config has model.{ours}={value}; "
                            f"make them agree (--config.model.{ours}=...)")
    if config.flavor != "transformer_xl" or not config.causal or config.positions != "relative":
        raise UserError("Transformer-XL weights need model.flavor='transformer_xl', model.causal=True and "
                        "model.positions='relative'")
