"""XLNet against HuggingFace `XLNetLMHeadModel`: same random weights, same tokens, segment ids,
factorization order (from xlpretrain's own sampler) and memory from a previous segment -> the same
query-stream logits and the same new memory; parameter counts of the paper configs; weights through
`xlpretrain convert import` and `export` and back into HuggingFace."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import XLNetConfig, XLNetLMHeadModel

from conftest import REPO, run_cli
from hf_oracle import hf_count, randomize, shapes, state_of
from xlpretrain import config as config_lib
from xlpretrain.convert import hf_bert, hf_xlnet
from xlpretrain.models.transformer import Memory, Permutation, TransformerXL, TransformerXLConfig
from xlpretrain.objectives import permutation
from xlpretrain.train.experiment import Experiment

VOCAB, BATCH, LENGTH, REUSE, MEM_LEN, PREDICT = 100, 4, 16, 8, 12, 6
SEP, CLS = 4, 3


def small_model(bi_data: bool, clamp_len: int) -> TransformerXLConfig:
    return TransformerXLConfig(vocab_size=VOCAB, n_layer=2, d_model=32, n_head=2, d_head=16, d_inner=64, dropout=0.0,
                               dropatt=0.0, mem_len=MEM_LEN, reuse_len=REUSE, bi_data=bi_data, clamp_len=clamp_len,
                               causal=False, untie_r=True, activation="gelu_tanh", layer_norm_eps=1e-12,
                               flavor="xlnet")


def hf_model(model: TransformerXLConfig) -> XLNetLMHeadModel:
    config = XLNetConfig(vocab_size=VOCAB, d_model=model.d_model, n_layer=model.n_layer, n_head=model.n_head,
                         d_inner=model.d_inner, ff_activation="gelu_new", mem_len=MEM_LEN, reuse_len=REUSE,
                         bi_data=model.bi_data, clamp_len=model.clamp_len, dropout=0.0, use_mems_train=True,
                         use_mems_eval=True)
    return randomize(XLNetLMHeadModel(config), std=0.1)


def segment(seed: int):
    """XLNet's layout, reuse part (8) + A + SEP + B + SEP + CLS, and an order from our sampler."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(10, VOCAB, (BATCH, LENGTH)).astype(np.int32)
    tokens[:, [11, 14]], tokens[:, 15] = SEP, CLS
    types = np.zeros((BATCH, LENGTH), np.int32)
    types[:, 12:15], types[:, 15] = 1, 2
    functional = np.isin(tokens, [SEP, CLS])
    order, _, _ = permutation.sample(jax.random.PRNGKey(seed), jnp.asarray(rng.random((BATCH, LENGTH)) < 0.6),
                                     jnp.asarray(functional), jnp.arange(BATCH) >= BATCH // 2, REUSE, PREDICT,
                                     perm_size=4, mask_alpha=6, mask_beta=1, max_span=5)
    return tokens, types, order


def hf_inputs(tokens, types, order, mems=None):
    return dict(input_ids=torch.tensor(tokens, dtype=torch.long), token_type_ids=torch.tensor(types, dtype=torch.long),
                perm_mask=torch.tensor(~np.asarray(order.can_see), dtype=torch.float32),
                target_mapping=torch.tensor(np.asarray(order.target_mapping)), mems=mems, use_mems=True)


def relative_difference(ours, theirs) -> float:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


@pytest.mark.parametrize("bi_data, clamp_len", [(True, -1), (False, 5)])
def test_two_segments_match_huggingface(bi_data, clamp_len):
    """Segment 1 from an empty memory, segment 2 on the memory segment 1 left: query-stream logits
    and the cached memory (each layer's input at the first reuse_len positions) agree."""
    model = small_model(bi_data, clamp_len)
    hf = hf_model(model)
    ours = TransformerXL(model)
    first, second = segment(0), segment(1)
    params = hf_bert.import_weights(state_of(hf), hf_xlnet.lm_head_entries(model.n_layer),
                                    shapes(ours, first[0], Memory.empty(model, BATCH), first[1], permutation=first[2]))

    def run(inputs, memory):
        tokens, types, order = inputs
        g, memory = ours.apply({"params": params}, tokens, memory, types, permutation=order)
        return ours.apply({"params": params}, g, method=TransformerXL.logits), memory

    logits_1, memory_1 = run(first, Memory.empty(model, BATCH))
    logits_2, memory_2 = run(second, memory_1)
    with torch.no_grad():
        out_1 = hf(**hf_inputs(*first))
        out_2 = hf(**hf_inputs(*second, mems=out_1.mems))

    def hf_memory(mems):  # [layers x (length, batch, d)] -> [layers, batch, length, d]
        return np.stack([m.numpy().transpose(1, 0, 2) for m in mems])

    assert relative_difference(logits_1, out_1.logits) < 1e-4
    assert relative_difference(logits_2, out_2.logits) < 1e-4
    # Ours is a fixed-size memory whose valid slots are the newest: REUSE of them after one segment.
    assert np.asarray(memory_1.valid).sum(axis=1).tolist() == [REUSE] * BATCH
    assert relative_difference(memory_1.hidden[:, :, -REUSE:], hf_memory(out_1.mems)) < 1e-4
    assert relative_difference(memory_2.hidden, hf_memory(out_2.mems)) < 1e-4
    # The comparison can fail: a different order changes HuggingFace's logits well beyond it.
    flipped = Permutation(can_see=~first[2].can_see, target_mapping=first[2].target_mapping)
    with torch.no_grad():
        other = hf(**hf_inputs(first[0], first[1], flipped)).logits
    assert relative_difference(logits_1, other) > 1e-2


def xlnet_hf_config(model) -> XLNetConfig:
    return XLNetConfig(vocab_size=model.vocab_size, d_model=model.d_model, n_layer=model.n_layer,
                       n_head=model.n_head, d_inner=model.d_inner, ff_activation="gelu_new")


@pytest.mark.parametrize("name, expected", [("xlnet/base", 116_750_336), ("xlnet/large", 360_300_800)])
def test_paper_configs_have_huggingface_parameter_counts(name, expected):
    config = config_lib.load(str(REPO / "configs" / f"{name}.py"))
    report = dict(Experiment(config, with_data=False).param_report())
    assert report["total"] == hf_count(XLNetLMHeadModel, xlnet_hf_config(config_lib.model_config(config)))
    assert report["total"] == expected
    assert report["LM head bias (lm_loss.bias)"] == 32_000


@pytest.mark.slow
def test_convert_import_export_round_trip(tmp_path, cache_dir):
    """An XLNetLMHeadModel saved by HuggingFace -> `convert import` -> `convert export` ->
    from_pretrained: the same logits; every tensor HuggingFace stores is written."""
    model = small_model(True, -1)
    hf = hf_model(model)
    hf.save_pretrained(tmp_path / "hf")
    overrides = [f"--config.model.{k}={v}" for k, v in
                 dict(n_layer=2, d_model=32, n_head=2, d_head=16, d_inner=64, vocab_size=VOCAB).items()]
    run_cli(["convert", "import", "--hf", str(tmp_path / "hf"), "--config", "configs/xlnet/base.py",
             "--workdir", str(tmp_path / "run")] + overrides, cache_dir)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["objective"] == "plm"
    run_cli(["convert", "export", "--workdir", str(tmp_path / "run"), "--hf", str(tmp_path / "out")], cache_dir)
    again = XLNetLMHeadModel.from_pretrained(tmp_path / "out").eval()
    tokens, types, order = segment(0)
    with torch.no_grad():
        np.testing.assert_allclose(again(**hf_inputs(tokens, types, order)).logits.numpy(),
                                   hf(**hf_inputs(tokens, types, order)).logits.numpy(), rtol=1e-6, atol=1e-6)
    stored = set(load_file(tmp_path / "out" / "model.safetensors"))
    assert set(state_of(hf)) - stored == {"lm_loss.weight"}  # tied to the word embedding
