"""`xlpretrain convert`: HuggingFace checkpoint directories <-> xlpretrain workdirs.

    xlpretrain convert import --hf DIR [--generator DIR] --config PATH --workdir OUT
        writes OUT/config.json and a step-0 checkpoint holding the HuggingFace weights (fresh
        optimizer state), so that `xlpretrain train --config PATH --workdir OUT` continues from them
        (an `ar` import adds `--config.data.vocab_file=DIR/vocab.pkl`, as the command prints).
    xlpretrain convert export --workdir W --hf DIR [--step N]
        writes DIR/config.json and DIR/model.safetensors: `mlm` runs as BertForMaskedLM
        (BertForPreTraining with next-sentence pairs; ElectraForMaskedLM when the embedding size
        differs from the hidden size), `rtd` runs as the discriminator alone (ElectraForPreTraining),
        and its generator in DIR/generator; `plm` runs as XLNetLMHeadModel.

An `ar` run imports HuggingFace's `TransfoXLLMHeadModel` (the released Transformer-XL, e.g.
`transfo-xl-wt103`) with its vocabulary (`vocab.pkl`), which becomes the run's `data.vocab_file`
so that the corpus is read with the release's word ids.

A HuggingFace directory holds `config.json` and `model.safetensors` (or `pytorch_model.bin`, which
needs torch to read). ElectraForPreTraining imports into an `rtd` run together with its generator
(`--generator`, an ElectraForMaskedLM directory), whose embeddings must equal the discriminator's.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jax
import ml_collections
import numpy as np

from xlpretrain import config as config_lib
from xlpretrain.convert import hf_bert, hf_xlnet, transfo_xl
from xlpretrain.data.corpora import WORD_CORPORA
from xlpretrain.data.vocab import Vocab
from xlpretrain.errors import UserError
from xlpretrain.objectives.rtd import generator_config
from xlpretrain.train.checkpoint import Checkpoints, committed_steps
from xlpretrain.train.experiment import CHECKPOINT_DIR, CONFIG_FILE, Experiment
from xlpretrain.train.state import TrainState

ACTIVATION_NAMES = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}


def read_hf(directory: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(config.json as a dict, tensors by name) of a HuggingFace checkpoint directory."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise UserError(f"{directory} has no config.json; pass a HuggingFace checkpoint directory")
    hf_config = json.loads((directory / "config.json").read_text())
    if (directory / "model.safetensors").is_file():
        from safetensors.numpy import load_file
        return hf_config, _current_names(load_file(directory / "model.safetensors"))
    if (directory / "pytorch_model.bin").is_file():
        try:
            import torch
        except ImportError:
            raise UserError(f"{directory} holds pytorch_model.bin, which needs torch to read: pip install torch, "
                            f"or convert it to model.safetensors") from None
        state = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
        return hf_config, _current_names({k: v.float().numpy() for k, v in state.items()})
    raise UserError(f"{directory} has neither model.safetensors nor pytorch_model.bin")


def _current_names(state: dict) -> dict:
    """The tensors under the names transformers loads them by: older BERT checkpoints (bert-base-cased
    on the Hub) call LayerNorm's weight and bias gamma and beta."""
    return {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)):
            value for name, value in state.items()}


def _architecture(hf_config: dict) -> str:
    # transformers' converter of the authors' TF checkpoints writes a config.json without architectures
    unnamed = ["TransfoXLLMHeadModel"] if hf_config.get("model_type") == "transfo-xl" else ["?"]
    names = hf_config.get("architectures") or unnamed
    known = ("BertForMaskedLM", "BertForPreTraining", "ElectraForMaskedLM", "ElectraForPreTraining", "XLNetLMHeadModel",
             "TransfoXLLMHeadModel")
    if names[0] not in known:
        raise UserError(f"cannot import a {names[0]}; xlpretrain imports {', '.join(known)}")
    return names[0]


def _check_pairs(pairs) -> None:
    """Raises UserError naming the first (config.json key, our field, ours, theirs) that differs."""
    for hf_key, ours, value, expected in pairs:
        if expected != value:
            raise UserError(f"config.json has {hf_key}={expected} but the xlpretrain config has model.{ours} "
                            f"giving {value}; make them agree (--config.model.{ours}=...)")


def _hf_counterpart(model, objective: str) -> None:
    """Raises UserError unless the model has the shape of a HuggingFace class: XLNet's (per-layer
    position biases) for `plm`, BERT's or ELECTRA's for `mlm` and `rtd` (ELECTRA's masked-LM head,
    HuggingFace's ElectraGeneratorPredictions, runs erf GELU whatever hidden_act says)."""
    if objective == "plm" and (model.flavor != "xlnet" or not model.untie_r):
        raise UserError("HuggingFace XLNet weights need model.flavor='xlnet' and model.untie_r=True "
                        "(xlpretrain.config.xlnet_model)")
    if objective != "plm" and (model.flavor != "bert" or model.causal or model.positions != "absolute"):
        raise UserError("HuggingFace BERT/ELECTRA weights need model.flavor='bert', model.causal=False and "
                        "model.positions='absolute' (xlpretrain.config.bert_encoder)")
    electra_head = objective == "rtd" or (objective == "mlm" and model.embed_size != model.d_model)
    if electra_head and model.activation != "gelu":
        raise UserError(f"HuggingFace's ELECTRA masked-LM head runs erf GELU; model.activation is "
                        f"{model.activation!r}, so set model.activation='gelu'")


def _check_xlnet(hf_config: dict, model) -> None:
    ours = _xlnet_fields(model)
    _check_pairs((key, name, ours[key], hf_config.get(key)) for key, name in XLNET_FIELDS)


def _check_model(hf_config: dict, model) -> None:
    """Raises UserError naming the first field where the xlpretrain config and config.json differ."""
    if hf_config["architectures"][0] == "XLNetLMHeadModel":
        return _check_xlnet(hf_config, model)
    pairs = [("num_hidden_layers", "n_layer", model.n_layer), ("hidden_size", "d_model", model.d_model),
             ("num_attention_heads", "n_head", model.n_head), ("intermediate_size", "d_inner", model.d_inner),
             ("vocab_size", "vocab_size", model.vocab_size),
             ("max_position_embeddings", "max_positions", model.max_positions),
             ("type_vocab_size", "n_token_types", model.n_token_types),
             ("embedding_size", "d_embed", model.embed_size), ("layer_norm_eps", "layer_norm_eps", model.layer_norm_eps),
             ("hidden_act", "activation", ACTIVATION_NAMES.get(model.activation))]
    _check_pairs((hf_key, ours, value, hf_config.get(hf_key, hf_config.get("hidden_size")
                                                    if hf_key == "embedding_size" else None))
                 for hf_key, ours, value in pairs)


# XLNetConfig key -> our model field; `_xlnet_fields` gives the values.
XLNET_FIELDS = (("vocab_size", "vocab_size"), ("d_model", "d_model"), ("n_layer", "n_layer"), ("n_head", "n_head"),
                ("d_head", "d_head"), ("d_inner", "d_inner"), ("ff_activation", "activation"),
                ("layer_norm_eps", "layer_norm_eps"), ("clamp_len", "clamp_len"))


def _xlnet_fields(model) -> dict:
    return {"vocab_size": model.vocab_size, "d_model": model.d_model, "n_layer": model.n_layer,
            "n_head": model.n_head, "d_head": model.d_head, "d_inner": model.d_inner,
            "ff_activation": ACTIVATION_NAMES.get(model.activation), "layer_norm_eps": model.layer_norm_eps,
            "clamp_len": model.clamp_len}


def _entries(exp: Experiment, architecture: str) -> list[hf_bert.Entry]:
    model = config_lib.model_config(exp.config)
    if architecture == "XLNetLMHeadModel":
        return hf_xlnet.lm_head_entries(model.n_layer)
    projected = model.embed_size != model.d_model
    if exp.config.objective == "rtd":
        if architecture == "ElectraForPreTraining":
            return hf_bert.discriminator_entries(model.n_layer, projected)
        generator = generator_config(model, exp.config.rtd.generator_size, exp.config.rtd.generator_layers)
        return hf_bert.generator_entries(generator.n_layer, generator.embed_size != generator.d_model)
    return hf_bert.masked_lm_entries(architecture, model.n_layer, projected, exp.config.data.examples.next_sentence)


def _layer_by_layer(config: ml_collections.ConfigDict) -> None:
    if config.model.scan_layers:
        raise UserError("HuggingFace weights convert layer by layer; set model.scan_layers=False")


def transfo_xl_params(hf_dir: str, exp: Experiment) -> dict:
    """The params of an `ar` run from a HuggingFace `TransfoXLLMHeadModel` directory (the released
    Transformer-XL), after checking its config.json against the run's model."""
    _layer_by_layer(exp.config)
    hf_config, state = read_hf(hf_dir)
    _wanted(_architecture(hf_config), exp.config.objective)
    model = config_lib.model_config(exp.config)
    transfo_xl.check_config(hf_config, model)
    return transfo_xl.from_hf_state_dict(state, model)


def _wanted(architecture: str, objective: str) -> None:
    wanted = {"mlm": ("BertForMaskedLM", "BertForPreTraining", "ElectraForMaskedLM"), "rtd": ("ElectraForPreTraining",),
              "plm": ("XLNetLMHeadModel",), "ar": ("TransfoXLLMHeadModel",)}
    if architecture not in wanted.get(objective, ()):
        right = next(name for name, architectures in wanted.items() if architecture in architectures)
        raise UserError(f"a {architecture} does not import into an {objective!r} run; use a config whose objective "
                        f"is {right}")


def import_checkpoint(hf_dir: str, generator_dir: str | None, config: ml_collections.ConfigDict, workdir: str) -> None:
    _layer_by_layer(config)
    if config.objective == "ar":
        config = with_release_vocabulary(config, hf_dir)
        exp = Experiment(config, with_data=False)
        return _write_workdir(exp, transfo_xl_params(hf_dir, exp), Path(workdir),
                              f" --config.data.vocab_file={config.data.vocab_file}")
    exp = Experiment(config, with_data=False)
    hf_config, state = read_hf(hf_dir)
    architecture = _architecture(hf_config)
    objective = exp.config.objective
    _wanted(architecture, objective)
    model = config_lib.model_config(exp.config)
    _hf_counterpart(model, objective)
    _check_model(hf_config, model)
    if objective == "mlm" and (architecture == "BertForPreTraining") != exp.config.data.examples.next_sentence:
        raise UserError("BertForPreTraining (and only it) has the next-sentence head; set "
                        "data.examples.next_sentence accordingly")
    like = exp.state_shapes.params
    params = hf_bert.import_weights(state, _entries(exp, architecture), like)
    if objective == "rtd":
        if generator_dir is None:
            raise UserError("an ElectraForPreTraining imports with its generator: pass --generator DIR "
                            "(an ElectraForMaskedLM directory)")
        generator_hf, generator_state = read_hf(generator_dir)
        if _architecture(generator_hf) != "ElectraForMaskedLM":
            raise UserError(f"--generator {generator_dir} is not an ElectraForMaskedLM")
        rtd = exp.config.rtd
        generator = generator_config(model, rtd.generator_size, rtd.generator_layers)
        for key, ours in (("hidden_size", generator.d_model), ("num_attention_heads", generator.n_head),
                          ("num_hidden_layers", generator.n_layer), ("intermediate_size", generator.d_inner)):
            if generator_hf.get(key) != ours:
                raise UserError(f"--generator {generator_dir} has {key}={generator_hf.get(key)}, but "
                                f"rtd.generator_size={rtd.generator_size} and rtd.generator_layers="
                                f"{rtd.generator_layers} give {ours} (ELECTRA's generator: one head per 64 "
                                f"dimensions, 4x feed-forward)")
        name = "electra.embeddings.word_embeddings.weight"
        if not np.array_equal(generator_state[name], state[name]):
            raise UserError("the generator's embeddings differ from the discriminator's; xlpretrain's rtd shares them")
        generator = hf_bert.import_weights(generator_state, _entries(exp, "ElectraForMaskedLM"), like)
        params = {**generator, **params, "embeddings": {**params["embeddings"],
                                                         "vocab": {**params["embeddings"]["vocab"],
                                                                   **generator["embeddings"]["vocab"]}}}
    _write_workdir(exp, params, Path(workdir))


def with_release_vocabulary(config: ml_collections.ConfigDict, hf_dir: str) -> ml_collections.ConfigDict:
    """`config` reading its corpus with the word ids of the Transformer-XL release in `hf_dir`, and
    sized to its vocabulary."""
    vocabulary = Path(hf_dir) / "vocab.pkl"
    if config.data.corpus not in ("text", *WORD_CORPORA):
        raise UserError(f"released weights are read with their own vocabulary, which the word corpora (text, "
                        f"{', '.join(WORD_CORPORA)}) take; a {config.data.corpus} release is not supported yet")
    if config.data.vocab_file and Path(config.data.vocab_file).resolve() != vocabulary.resolve():
        raise UserError(f"data.vocab_file is {config.data.vocab_file}, but the weights in {hf_dir} use the word ids "
                        f"of {vocabulary}; leave data.vocab_file empty")
    config = copy.deepcopy(config)
    config.data.vocab_file = str(vocabulary.resolve())
    if config.model.vocab_size is None:
        config.model.vocab_size = len(Vocab.read(vocabulary))
    return config


def _write_workdir(exp: Experiment, params, workdir: Path, overrides: str = "") -> None:
    """The step-0 checkpoint of `params`; prints the train command that continues from it, with the
    `overrides` by which the workdir's config differs from the one given."""
    checkpoints_dir = workdir / CHECKPOINT_DIR
    if committed_steps(checkpoints_dir):
        raise UserError(f"{workdir} already holds checkpoints; choose an empty --workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / CONFIG_FILE).write_text(config_lib.to_json(exp.config))
    with exp.context():
        state = exp.init_state()
        params = jax.tree.map(lambda x, like: jax.device_put(np.asarray(x, like.dtype), like.sharding),
                              params, state.params)
        state = TrainState(step=state.step, params=params, opt_state=state.opt_state, rng=state.rng,
                           memory=state.memory)
        checkpoints = Checkpoints(checkpoints_dir, exp.config.train.keep_checkpoints)
        checkpoints.save(state, None)
        checkpoints.close()
    print(f"xlpretrain: imported into {workdir} (step 0); continue with `xlpretrain train --config "
          f"<the same config>{overrides} --workdir {workdir}`", flush=True)


def _hf_config(exp: Experiment, model, architecture: str) -> dict:
    if architecture == "XLNetLMHeadModel":
        return {"architectures": [architecture], "model_type": "xlnet", **_xlnet_fields(model),
                "untie_r": True, "attn_type": "bi", "initializer_range": model.init_std, "dropout": model.dropout,
                "mem_len": model.mem_len or None, "reuse_len": model.reuse_len or None, "bi_data": model.bi_data,
                "same_length": model.same_length, "pad_token_id": 5, "bos_token_id": 1, "eos_token_id": 2}
    electra = architecture.startswith("Electra")
    fields = {"architectures": [architecture], "model_type": "electra" if electra else "bert",
              "vocab_size": model.vocab_size, "hidden_size": model.d_model, "num_hidden_layers": model.n_layer,
              "num_attention_heads": model.n_head, "intermediate_size": model.d_inner,
              "hidden_act": ACTIVATION_NAMES[model.activation], "hidden_dropout_prob": model.dropout,
              "attention_probs_dropout_prob": model.dropatt, "max_position_embeddings": model.max_positions,
              "type_vocab_size": model.n_token_types, "initializer_range": model.init_std,
              "layer_norm_eps": model.layer_norm_eps, "pad_token_id": 0}
    if electra:
        fields["embedding_size"] = model.embed_size
    return fields


def _write_hf(directory: Path, fields: dict, state: dict) -> None:
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(fields, indent=2))
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    print(f"xlpretrain: wrote {fields['architectures'][0]} to {directory}", flush=True)


def export_checkpoint(workdir: str, hf_dir: str, step: int | None) -> None:
    workdir = Path(workdir)
    if not (workdir / CONFIG_FILE).is_file():
        raise UserError(f"{workdir} holds no {CONFIG_FILE}; pass the --workdir of a run")
    config = config_lib.from_json((workdir / CONFIG_FILE).read_text())
    _layer_by_layer(config)
    if config.objective not in ("mlm", "plm", "rtd"):
        raise UserError(f"export writes BERT, ELECTRA and XLNet checkpoints; the run in {workdir} is {config.objective!r}")
    exp = Experiment(config, with_data=False)
    model = config_lib.model_config(exp.config)
    _hf_counterpart(model, config.objective)
    if not committed_steps(workdir / CHECKPOINT_DIR):
        raise UserError(f"{workdir} holds no checkpoint yet; export a run that has saved one")
    checkpoints = Checkpoints(workdir / CHECKPOINT_DIR, exp.config.train.keep_checkpoints)
    try:
        step = checkpoints.latest_step() if step is None else step
        if step not in checkpoints.all_steps():
            raise UserError(f"no checkpoint at step {step} in {workdir / CHECKPOINT_DIR}; steps: {checkpoints.all_steps()}")
        with exp.context():
            params = jax.device_get(checkpoints.restore_params(step, exp.state_shapes.params,
                                                               exp.state_shardings.params))
    finally:
        checkpoints.close()
    out = Path(hf_dir)
    if exp.config.objective == "rtd":
        discriminator = hf_bert.export_weights(params, _entries(exp, "ElectraForPreTraining"))
        _write_hf(out, _hf_config(exp, model, "ElectraForPreTraining"), discriminator)
        generator = generator_config(model, exp.config.rtd.generator_size, exp.config.rtd.generator_layers)
        embeddings = {k: v for k, v in discriminator.items() if k.startswith("electra.embeddings.")}
        state = {**embeddings, **hf_bert.export_weights(params, _entries(exp, "ElectraForMaskedLM"))}
        _write_hf(out / "generator", _hf_config(exp, generator, "ElectraForMaskedLM"), state)
        return
    if exp.config.objective == "plm":
        architecture = "XLNetLMHeadModel"
    elif model.embed_size != model.d_model:
        architecture = "ElectraForMaskedLM"
    else:
        architecture = "BertForPreTraining" if exp.config.data.examples.next_sentence else "BertForMaskedLM"
    _write_hf(out, _hf_config(exp, model, architecture), hf_bert.export_weights(params, _entries(exp, architecture)))
