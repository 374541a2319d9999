"""The encoder objectives: masking statistics, ELECTRA's sampling without gradient, padding that
changes nothing, the examples pipeline, and exact resume by step through the `xlpretrain` command."""

import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import comparable, read_lines, run_cli
from xlpretrain import config as config_lib
from xlpretrain.data.corpora import DocumentSplit
from xlpretrain.data.examples import ExampleStream, build_examples
from xlpretrain.data.vocab import WordPiece
from xlpretrain.errors import UserError
from xlpretrain.objectives import build, masking
from xlpretrain.train.experiment import Experiment

VOCAB = 1000


def masked_rows(rows=4000, length=64, seed=0):
    """Rows of [CLS] tokens [SEP] tokens [SEP] + padding, of random lengths."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(10, length + 1, rows)
    tokens = rng.integers(5, VOCAB, (rows, length)).astype(np.int32)
    valid = np.arange(length)[None, :] < lengths[:, None]
    special = np.zeros((rows, length), bool)
    special[:, 0] = True
    special[np.arange(rows), lengths // 2] = True
    special[np.arange(rows), lengths - 1] = True
    tokens[~valid] = 0
    return tokens, valid, valid & ~special


@pytest.mark.parametrize("mask_frac, random_frac", [(0.8, 0.1), (0.85, 0.0)], ids=["bert", "electra"])
def test_masking_counts_specials_and_fractions(mask_frac, random_frac):
    tokens, valid, maskable = masked_rows()
    positions, weights = jax.jit(masking.choose_positions, static_argnums=(3, 4))(
        jax.random.PRNGKey(0), maskable, valid.sum(1), 0.15, 20)
    positions, weights = np.asarray(positions), np.asarray(weights)
    expected = np.minimum(np.clip(np.round(valid.sum(1) * 0.15), 1, 20), maskable.sum(1))
    np.testing.assert_array_equal(weights.sum(1), expected)
    chosen = weights > 0
    rows = np.nonzero(chosen)[0]
    assert maskable[rows, positions[chosen]].all(), "a special token or padding was chosen"
    for r in range(200):
        picked = positions[r][chosen[r]]
        assert len(set(picked.tolist())) == len(picked)
    corrupted = np.asarray(masking.corrupt(jax.random.PRNGKey(1), jnp.asarray(tokens), jnp.asarray(positions),
                                           jnp.asarray(weights), 4, VOCAB, mask_frac, random_frac))
    np.testing.assert_array_equal(corrupted[~maskable], tokens[~maskable])
    at_chosen, original = corrupted[rows, positions[chosen]], tokens[rows, positions[chosen]]
    n = len(at_chosen)
    assert n > 20_000
    as_mask = np.mean(at_chosen == 4)
    unchanged = np.mean(at_chosen == original)
    tolerance = 4 * np.sqrt(0.25 / n)
    assert abs(as_mask - mask_frac) < tolerance
    assert abs(unchanged - (1 - mask_frac - random_frac) - random_frac / VOCAB) < tolerance
    assert abs(1 - as_mask - unchanged - random_frac * (1 - 1 / VOCAB)) < tolerance
    untouched = np.ones(tokens.shape, bool)
    untouched[rows, positions[chosen]] = False
    np.testing.assert_array_equal(corrupted[untouched], tokens[untouched])


def test_whole_word_masking_takes_whole_words_within_the_count():
    tokens, valid, maskable = masked_rows(rows=500)
    rng = np.random.default_rng(3)
    word_starts = rng.random(tokens.shape) < 0.5
    positions, weights = masking.choose_positions(jax.random.PRNGKey(2), maskable, valid.sum(1), 0.15, 20,
                                                  jnp.asarray(word_starts))
    positions, weights = np.asarray(positions), np.asarray(weights)
    # Words end at special tokens and padding, whatever word_starts says.
    after_special = np.pad(~maskable[:, :-1], ((0, 0), (1, 0)), constant_values=True)
    word = np.cumsum(word_starts | ~maskable | after_special, axis=1)
    k = np.minimum(np.clip(np.round(valid.sum(1) * 0.15), 1, 20), maskable.sum(1))
    assert (weights.sum(1) <= k).all() and weights.sum() > 0.8 * k.sum()
    for r in range(len(tokens)):
        picked = set(positions[r][weights[r] > 0].tolist())
        words = {word[r, p] for p in picked}
        whole = {p for p in range(tokens.shape[1]) if word[r, p] in words}
        assert picked == whole, r
        assert maskable[r, list(picked)].all()


def tiny_config(name, **changes):
    """The config of a tiny mlm or rtd objective over a 300-piece vocabulary; `changes` as
    section__field=value."""
    config = config_lib.defaults()
    config.objective = name
    config_lib.bert_encoder(config, n_layer=2, d_model=32, n_head=2, d_embed=24 if name == "rtd" else 0)
    config.model.update(vocab_size=300, dropout=0.1, dropatt=0.1)
    config.masking.update(mask_id=4, max_predictions=6)
    config.rtd.generator_size = 0.5
    config.train.tgt_len = 16
    for key, value in changes.items():
        section, field = key.split("__")
        config[section][field] = value
    return config


def objective(name, **changes):
    """A tiny mlm or rtd objective (tiny_config) and its initial parameters."""
    config = tiny_config(name, **changes)
    config_lib.validate(config)
    obj = build(config)
    return obj, nn.meta.unbox(jax.jit(obj.init_params)(jax.random.PRNGKey(0)))


def encoder_batch(rng=0):
    rng = np.random.default_rng(rng)
    tokens = rng.integers(5, 300, (3, 16)).astype(np.int32)
    valid = np.ones((3, 16), bool)
    valid[1, 10:] = valid[2, 5:] = False
    tokens[:, 0], tokens[~valid] = 2, 0
    batch = {"tokens": tokens, "token_types": (np.arange(16) >= 8).astype(np.int32)[None].repeat(3, 0),
             "valid": valid, "maskable": valid & (tokens != 2), "word_starts": np.ones((3, 16), bool)}
    return {k: jnp.asarray(v) for k, v in batch.items()}


def test_no_gradient_reaches_the_generator_through_its_samples():
    """With the generator's own loss weighted 0, the discriminator loss gives the generator's
    layers, head and output bias exactly zero gradient (but the shared embeddings do get some)."""
    obj, params = objective("rtd", rtd__generator_weight=0.0)
    grads = jax.jit(jax.grad(lambda p: obj.loss(p, encoder_batch(), (), jax.random.PRNGKey(5), True)[0]))(params)
    for part in ("generator", "generator_head"):
        assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads[part])), part
    assert np.all(np.asarray(grads["embeddings"]["vocab"]["bias"]) == 0)
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads["discriminator"]))
    assert np.any(np.asarray(grads["embeddings"]["vocab"]["embedding"]) != 0)
    _, metrics = jax.jit(lambda p: obj.loss(p, encoder_batch(), (), jax.random.PRNGKey(5), True)[1])(params)
    assert float(metrics["replaced"][0]) > 0, "the generator replaced nothing; the test would be vacuous"


@pytest.mark.parametrize("name, changes", [("mlm", {}), ("rtd", {}), ("mlm", {"model__positions": "relative"})],
                         ids=["mlm", "rtd", "mlm-relative-positions"])
def test_padding_changes_no_loss(name, changes):
    """Other tokens and token types at the padded positions: every loss and metric stays the same,
    with dropout on (same key), in both objectives, and with Transformer-XL's relative positions."""
    obj, params = objective(name, **changes)
    batch = encoder_batch()
    other = dict(batch)
    rng = np.random.default_rng(9)
    other["tokens"] = np.where(batch["valid"], batch["tokens"], rng.integers(5, 300, batch["tokens"].shape))
    other["token_types"] = np.where(batch["valid"], batch["token_types"], 1 - batch["token_types"])
    loss = jax.jit(lambda p, b: obj.loss(p, b, (), jax.random.PRNGKey(3), True))
    first, second = loss(params, batch), loss(params, other)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), first, second))


def test_dot_product_attention_gives_the_losses_and_gradients_of_the_einsums():
    """model.attention_kernel='xla' (jax.nn.dot_product_attention) against the default einsums, in
    a training step with dropout on and padding: the same loss and gradients up to float32 rounding.
    (test_encoders_hf also checks its logits against HuggingFace's.)"""
    results = []
    for kernel in ("einsum", "xla"):
        obj, params = objective("mlm", model__dropatt=0.0, model__attention_kernel=kernel)
        loss = jax.jit(jax.value_and_grad(lambda p: obj.loss(p, encoder_batch(), (), jax.random.PRNGKey(3), True)[0]))
        results.append(loss(params))
    (loss_a, grads_a), (loss_b, grads_b) = results
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * float(np.max(np.abs(a))))


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="checks the refusal off a GPU")
def test_the_cudnn_kernel_is_refused_off_gpu():
    config = tiny_config("mlm", model__dropatt=0.0, model__attention_kernel="cudnn", model__dtype="bfloat16")
    with pytest.raises(UserError, match="model.attention_kernel='cudnn' runs on NVIDIA GPUs, not on cpu; "
                                        "set model.attention_kernel='xla' there"):
        Experiment(config, with_data=False)


def test_an_existing_bert_vocab_file_is_read_as_bert_does(tmp_path):
    """A vocab.txt in BERT's format: line number = id, `##` continuations, lower-casing, [UNK]."""
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "un", "##believ", "##able", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    tokenizer = WordPiece(tmp_path / "vocab.txt", lowercase=True)
    assert (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id, len(tokenizer)) == (0, 2, 3, 4, 12)
    ids = tokenizer.encode(["The cat sat unbelievable.", "dog"])
    assert [pieces[i] for i in ids[0]] == ["the", "cat", "sat", "un", "##believ", "##able", "."]
    assert ids[1].tolist() == [1]
    assert tokenizer.word_starts()[[8, 9, 10]].tolist() == [True, False, False]
    (tmp_path / "bad.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"lacks \[PAD\], \[UNK\], \[CLS\], \[SEP\], \[MASK\]"):
        WordPiece(tmp_path / "bad.txt", lowercase=True)


def test_examples_are_packed_bert_style_and_batches_are_a_function_of_the_step():
    """Synthetic documents of numbered sentences: every example is [CLS] A [SEP] (B [SEP]), within
    the length, A and B are consecutive sentences of one document without next-sentence pairs; with
    them, about half the B segments come from another document. Batches depend on the step only."""
    sentences = [np.arange(100 * s, 100 * s + 5 + s % 7, dtype=np.int32) + 10 for s in range(300)]
    split = DocumentSplit(np.concatenate(sentences), np.cumsum([len(s) for s in sentences]),
                          np.arange(10, 301, 10))
    tokenizer = WordPiece.__new__(WordPiece)
    tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id = 0, 2, 3, 4
    tokenizer.symbols = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"t{i}" for i in range(30_000)]
    examples = build_examples(split, tokenizer, 32, next_sentence=False, short_seq_prob=0.1, seed=0)
    for row, types in zip(examples["tokens"], examples["token_types"]):
        length = int((row != 0).sum())
        assert row[0] == 2 and row[length - 1] == 3 and (row[length:] == 0).all()
        seps = np.nonzero(row == 3)[0]
        assert len(seps) in (1, 2)
        body = row[1:length][row[1:length] != 3]
        assert len({int(t) // 100 // 10 for t in body - 10}) == 1, "A and B come from one document"
        assert (types[:seps[0] + 1] == 0).all() and (types[seps[0] + 1:length] == 1).all()
    assert examples["next_sentence"].sum() == 0
    paired = build_examples(split, tokenizer, 32, next_sentence=True, short_seq_prob=0.1, seed=0)
    assert 0.35 < paired["next_sentence"].mean() < 0.65
    stream = ExampleStream(examples, tokenizer, 8, seed=1)
    again = ExampleStream(examples, tokenizer, 8, seed=1)
    for step in (0, 5, 40, 3):
        np.testing.assert_array_equal(stream.batch_at(step)["tokens"], again.batch_at(step)["tokens"])
    epoch = np.concatenate([stream.batch_at(s)["tokens"] for s in range(len(examples["tokens"]) // 8)])
    assert len({r.tobytes() for r in epoch}) == len(epoch), "an epoch repeats no example"
    hosts = [ExampleStream(examples, tokenizer, 8, 1, host_index=h, host_count=2).batch_at(7)["tokens"] for h in (0, 1)]
    np.testing.assert_array_equal(np.concatenate(hosts), stream.batch_at(7)["tokens"])


TINY_ENCODER = [
    "--config.data.dir={data}", "--config.data.wordpiece.vocab_size=1000",
    "--config.model.n_layer=1", "--config.model.d_model=32", "--config.model.n_head=2",
    "--config.model.d_head=16", "--config.model.d_inner=64", "--config.masking.max_predictions=5",
    "--config.train.batch_size=4", "--config.train.tgt_len=32", "--config.train.steps=8",
    "--config.train.warmup_steps=2", "--config.train.log_every=1", "--config.train.eval_every=4",
    "--config.train.checkpoint_every=2", "--config.train.keep_checkpoints=10",
    "--config.eval.tgt_len=32", "--config.eval.batch_size=8",
]


@pytest.mark.slow
@pytest.mark.parametrize("config, extra", [
    ("configs/bert/large.py:cpu", ["--config.masking.whole_word=True"]),
    ("configs/electra/small.py:cpu", ["--config.model.d_embed=16", "--config.rtd.generator_size=0.5"]),
    ("configs/xlnet/base.py:cpu", ["--config.data.sentencepiece.vocab_size=500", "--config.model.reuse_len=16",
                                   "--config.model.mem_len=24", "--config.eval.mem_len=24", "--config.plm.perm_size=8"]),
], ids=["mlm", "rtd", "plm"])
def test_resume_from_a_checkpoint_reproduces_the_run(config, extra, small_wikitext, tmp_path, cache_dir):
    """Train 8 steps; then, from the same workdir cut back to its step-4 checkpoint, train again:
    the train lines of steps 5-8 and the final test line are the same to the last bit (for plm
    also through the memory the checkpoint carries)."""
    args = [a.format(data=small_wikitext) for a in TINY_ENCODER] + extra
    full = tmp_path / "full"
    run_cli(["train", "--config", config, "--workdir", str(full)] + args, cache_dir)
    lines = read_lines(full)
    assert [line["step"] for line in lines if line["split"] == "train"] == list(range(1, 9))
    assert lines[-1]["split"] == "test" and lines[-1]["step"] == 8
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    for step in (6, 8):
        shutil.rmtree(cut / "checkpoints" / str(step))
    resumed = run_cli(["train", "--config", config, "--workdir", str(cut)] + args, cache_dir)
    assert "resuming at step 4" in resumed.stdout
    assert comparable(read_lines(cut)) == comparable(lines)
