"""BERT and ELECTRA against HuggingFace `transformers` itself: same random weights, same inputs
with padding -> the same logits; parameter counts of the paper configs; weights through
`xlpretrain convert import` and `export` and back into HuggingFace."""

import dataclasses
import json

import jax
import numpy as np
import pytest
import torch
from transformers import (BertConfig, BertForMaskedLM, BertForPreTraining, ElectraConfig, ElectraForMaskedLM,
                          ElectraForPreTraining)

from conftest import REPO, run_cli
from hf_oracle import hf_count, randomize, shapes, state_of
from xlpretrain import config as config_lib
from xlpretrain.convert import checkpoints, hf_bert
from xlpretrain.errors import UserError
from xlpretrain.objectives.mlm import MaskedLMModel
from xlpretrain.objectives.rtd import Electra, generator_config
from xlpretrain.train.experiment import Experiment

VOCAB, LENGTH = 101, 12


def small_config(d_embed: int = 0):
    """A 2-layer encoder, 32 wide, 2 heads of 16, as an xlpretrain config and its backbone config."""
    config = config_lib.defaults()
    config_lib.bert_encoder(config, n_layer=2, d_model=32, n_head=2, d_embed=d_embed)
    config.model.update(vocab_size=VOCAB, max_positions=40, dropout=0.0, dropatt=0.0)
    return config, config_lib.model_config(config)


def hf_kwargs(model, **extra):
    return dict(vocab_size=model.vocab_size, hidden_size=model.d_model, num_hidden_layers=model.n_layer,
                num_attention_heads=model.n_head, intermediate_size=model.d_inner, hidden_act="gelu",
                max_position_embeddings=model.max_positions, type_vocab_size=2, layer_norm_eps=1e-12,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **extra)


def inputs():
    """Two rows of random tokens and token types; the second has 5 padding positions."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, VOCAB, (2, LENGTH)).astype(np.int32)
    valid = np.ones((2, LENGTH), bool)
    valid[1, LENGTH - 5:] = False
    tokens[~valid] = 0
    types = (np.arange(LENGTH)[None, :] >= 6).astype(np.int32).repeat(2, axis=0)
    return {"tokens": tokens, "token_types": types, "valid": valid}


def torch_inputs(batch):
    return dict(input_ids=torch.tensor(batch["tokens"], dtype=torch.long),
                token_type_ids=torch.tensor(batch["token_types"], dtype=torch.long),
                attention_mask=torch.tensor(batch["valid"], dtype=torch.long))


def assert_close(ours, theirs):
    """Max difference relative to the largest logit below 1e-5 (the issue asks 1e-4; 2e-7 is typical
    here, and the tanh GELU in place of the erf one already gives about 3e-5)."""
    ours, theirs = np.asarray(ours), theirs.detach().numpy()
    assert ours.shape == theirs.shape
    relative = np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))
    assert relative < 1e-5, relative


@pytest.mark.parametrize("architecture, kernel", [("BertForMaskedLM", "einsum"), ("BertForPreTraining", "einsum"),
                                                  ("ElectraForMaskedLM", "einsum"), ("BertForMaskedLM", "xla"),
                                                  ("ElectraForMaskedLM", "xla")])
def test_masked_lm_logits_match_huggingface(architecture, kernel):
    """Also with the attention of jax.nn.dot_product_attention (model.attention_kernel='xla')."""
    electra = architecture.startswith("Electra")
    _, model = small_config(d_embed=24 if electra else 0)
    model = dataclasses.replace(model, attention_kernel=kernel)
    if electra:
        hf = ElectraForMaskedLM(ElectraConfig(**hf_kwargs(model, embedding_size=24)))
    else:
        hf = (BertForPreTraining if architecture == "BertForPreTraining" else BertForMaskedLM)(BertConfig(**hf_kwargs(model)))
    hf = randomize(hf)
    next_sentence = architecture == "BertForPreTraining"
    ours = MaskedLMModel(model, next_sentence)
    batch = inputs()
    entries = hf_bert.masked_lm_entries(architecture, model.n_layer, electra, next_sentence)
    params = hf_bert.import_weights(state_of(hf), entries, shapes(ours, batch))
    logits, nsp = ours.apply({"params": params}, batch)
    with torch.no_grad():
        out = hf(**torch_inputs(batch))
    assert_close(logits, out.prediction_logits if next_sentence else out.logits)
    if next_sentence:
        assert_close(nsp, out.seq_relationship_logits)
    exported = hf_bert.export_weights(params, entries)
    for name, tensor in hf.state_dict().items():
        if name in exported:
            np.testing.assert_array_equal(exported[name], tensor.numpy())
    tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias", "generator_lm_head.weight"}
    left_out = {k for k in hf.state_dict() if k not in exported and not k.endswith("position_ids")} - tied
    assert not left_out


def test_electra_discriminator_and_generator_match_huggingface():
    """ELECTRA-style: discriminator 32 wide with embeddings of 24 (projected), generator at half
    size (16 wide, one head, projected from the same 24-wide embeddings, which it shares)."""
    _, disc = small_config(d_embed=24)
    gen = generator_config(disc, 0.5, 1.0)
    assert (gen.d_model, gen.n_head, gen.d_inner, gen.embed_size) == (16, 1, 64, 24)
    hf_disc = randomize(ElectraForPreTraining(ElectraConfig(**hf_kwargs(disc, embedding_size=24))))
    hf_gen = randomize(ElectraForMaskedLM(ElectraConfig(**hf_kwargs(gen, embedding_size=24))))
    with torch.no_grad():  # ELECTRA shares the embeddings
        for name, p in hf_gen.electra.embeddings.named_parameters():
            p.copy_(dict(hf_disc.electra.embeddings.named_parameters())[name])
    ours = Electra(disc, gen)
    batch = inputs()
    like = shapes(ours, batch)
    params = hf_bert.import_weights(state_of(hf_disc), hf_bert.discriminator_entries(disc.n_layer, True), like)
    generator = hf_bert.import_weights(state_of(hf_gen), hf_bert.generator_entries(gen.n_layer, True), like)
    params.update(generator=generator["generator"], generator_head=generator["generator_head"])
    params["embeddings"]["vocab"]["bias"] = generator["embeddings"]["vocab"]["bias"]
    assert jax.tree.structure(params) == jax.tree.structure(like)
    with torch.no_grad():
        assert_close(ours.apply({"params": params}, batch, method=Electra.discriminator_logits),
                     hf_disc(**torch_inputs(batch)).logits)
        assert_close(ours.apply({"params": params}, batch, method=Electra.generator_logits),
                     hf_gen(**torch_inputs(batch)).logits)


@pytest.mark.parametrize("name", ["bert/base", "bert/large", "electra/small", "electra/base", "electra/large"])
def test_paper_configs_have_the_reference_parameter_counts(name):
    """`xlpretrain params` of each paper config against transformers' count of the same model,
    and against the reference integers."""
    config = config_lib.load(str(REPO / "configs" / f"{name}.py"))
    report = dict((what, n) for n, what in ((n, w) for w, n in Experiment(config, with_data=False).param_report()))
    model = config_lib.model_config(config)
    kwargs = hf_kwargs(model)
    kwargs.update(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    if name.startswith("bert"):
        ours = report["= encoder + pooler (HF BertModel)"]
        from transformers import BertModel
        assert ours == hf_count(BertModel, BertConfig(**kwargs))
        assert ours == {"bert/base": 109_482_240, "bert/large": 335_141_888}[name]
        assert report["total"] == hf_count(BertForPreTraining, BertConfig(**kwargs))
    else:
        ours = report["discriminator (HF ElectraForPreTraining)"]
        assert ours == hf_count(ElectraForPreTraining, ElectraConfig(**kwargs, embedding_size=model.embed_size))
        assert ours == {"electra/small": 13_549_057, "electra/base": 109_483_009, "electra/large": 335_142_913}[name]
        gen = generator_config(model, config.rtd.generator_size, config.rtd.generator_layers)
        gen_kwargs = hf_kwargs(gen, embedding_size=gen.embed_size)
        assert report["generator as HF ElectraForMaskedLM counts it"] == hf_count(ElectraForMaskedLM,
                                                                                  ElectraConfig(**gen_kwargs))


def test_layer_norms_named_gamma_and_beta_read_as_transformers_reads_them(tmp_path):
    """Older BERT checkpoints (bert-base-cased on the Hub) name LayerNorm's parameters gamma and
    beta; transformers loads them as weight and bias, and so does the import."""
    from safetensors.numpy import load_file, save_file

    _, model = small_config()
    hf = randomize(BertForMaskedLM(BertConfig(**hf_kwargs(model))))
    hf.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    old = {name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): value
           for name, value in state.items()}
    assert sum(name.endswith("LayerNorm.gamma") for name in old) == 2 * model.n_layer + 2
    save_file(old, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded = state_of(BertForMaskedLM.from_pretrained(tmp_path))
    _, read = checkpoints.read_hf(tmp_path)
    assert set(read) == set(state)
    for name, value in read.items():
        np.testing.assert_array_equal(value, state[name])
        if name in loaded:
            np.testing.assert_array_equal(value, loaded[name])


@pytest.mark.parametrize("spec, change, message", [
    ("xlnet/base.py:cpu", "model.untie_r=False", "need model.flavor='xlnet' and model.untie_r=True"),
    ("bert/base.py:cpu", "model.positions='relative'", "need model.flavor='bert', model.causal=False and "
                                                       "model.positions='absolute'"),
    # transformers' ElectraGeneratorPredictions calls get_activation("gelu"), not config.hidden_act.
    ("electra/small.py:cpu", "model.activation='relu'", "ELECTRA masked-LM head runs erf GELU"),
], ids=["xlnet-shared-biases", "bert-relative", "electra-relu"])
def test_models_with_no_huggingface_counterpart_are_refused(spec, change, message):
    """On import and on export: an XLNet without per-layer biases, a BERT with relative positions
    and an ELECTRA whose masked-LM head would not run GELU have no HuggingFace class to map to."""
    config = config_lib.override(config_lib.load(str(REPO / "configs" / spec)), [change])
    with pytest.raises(UserError, match=message):
        checkpoints._hf_counterpart(config_lib.model_config(config), config.objective)


def test_export_of_a_run_without_checkpoints_is_refused_and_leaves_it_as_it_was(tmp_path):
    config, _ = small_config()
    config.objective = "mlm"
    config.train.tgt_len = config.eval.tgt_len = 32
    (tmp_path / "config.json").write_text(config_lib.to_json(config))
    with pytest.raises(UserError, match=f"^{tmp_path} holds no checkpoint yet; export a run that has saved one$"):
        checkpoints.export_checkpoint(str(tmp_path), str(tmp_path / "out"), None)
    assert [path.name for path in tmp_path.iterdir()] == ["config.json"]


@pytest.mark.slow
def test_convert_import_export_round_trip(tmp_path, cache_dir):
    """An ElectraForPreTraining + generator saved by HuggingFace -> `xlpretrain convert import` ->
    `convert export` -> loaded by HuggingFace again: the same discriminator logits."""
    _, disc = small_config(d_embed=24)
    gen = generator_config(disc, 0.5, 1.0)
    hf_disc = randomize(ElectraForPreTraining(ElectraConfig(**hf_kwargs(disc, embedding_size=24))))
    hf_gen = randomize(ElectraForMaskedLM(ElectraConfig(**hf_kwargs(gen, embedding_size=24))))
    with torch.no_grad():
        for name, p in hf_gen.electra.embeddings.named_parameters():
            p.copy_(dict(hf_disc.electra.embeddings.named_parameters())[name])
    hf_disc.save_pretrained(tmp_path / "disc")
    hf_gen.save_pretrained(tmp_path / "gen")
    overrides = ["--config.model.n_layer=2", "--config.model.d_model=32", "--config.model.n_head=2",
                 "--config.model.d_head=16", "--config.model.d_inner=128", "--config.model.d_embed=24",
                 f"--config.model.vocab_size={VOCAB}", "--config.model.max_positions=40",
                 "--config.rtd.generator_size=0.5", "--config.train.tgt_len=12", "--config.eval.tgt_len=12",
                 "--config.masking.max_predictions=4"]
    run_cli(["convert", "import", "--hf", str(tmp_path / "disc"), "--generator", str(tmp_path / "gen"),
             "--config", "configs/electra/small.py", "--workdir", str(tmp_path / "run")] + overrides, cache_dir)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["d_embed"] == 24
    two_heads = randomize(ElectraForMaskedLM(ElectraConfig(**dict(hf_kwargs(gen, embedding_size=24),
                                                                  num_attention_heads=2))))
    two_heads.save_pretrained(tmp_path / "gen2")
    refused = run_cli(["convert", "import", "--hf", str(tmp_path / "disc"), "--generator", str(tmp_path / "gen2"),
                       "--config", "configs/electra/small.py", "--workdir", str(tmp_path / "run2")] + overrides,
                      cache_dir, check=False)
    assert refused.returncode == 2 and f"--generator {tmp_path / 'gen2'} has num_attention_heads=2, but " \
        "rtd.generator_size=0.5 and rtd.generator_layers=1.0 give 1" in refused.stderr
    run_cli(["convert", "export", "--workdir", str(tmp_path / "run"), "--hf", str(tmp_path / "out")], cache_dir)
    batch = torch_inputs(inputs())
    again = ElectraForPreTraining.from_pretrained(tmp_path / "out").eval()
    again_gen = ElectraForMaskedLM.from_pretrained(tmp_path / "out" / "generator").eval()
    with torch.no_grad():
        np.testing.assert_allclose(again(**batch).logits.numpy(), hf_disc(**batch).logits.numpy(), rtol=1e-6)
        np.testing.assert_allclose(again_gen(**batch).logits.numpy(), hf_gen(**batch).logits.numpy(), rtol=1e-6)
