"""XLNet's data side: SentencePiece vocabularies as XLNet's, and its examples that continue the
memory from batch to batch (data/xlnet.py)."""

from pathlib import Path

import numpy as np
import pytest

from xlpretrain import config as config_lib
from xlpretrain.data import corpora
from xlpretrain.data.corpora import DocumentSplit
from xlpretrain.data.vocab import SentencePiece, xlnet_preprocess
from xlpretrain.data.xlnet import XLNetStream, sentence_stream
from xlpretrain.errors import UserError

TEXT = ("The cat sat on the mat in 1990, and the dog ran off.\nA café opened ``late'' near   the river.\n"
        "Numbers like 2,500 and 1,000,000 appear here.\nShe said that the quick brown fox jumps.\n") * 40


@pytest.fixture(scope="module")
def spiece(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sp") / "spiece.model"
    SentencePiece.train(TEXT.splitlines(), 120, False, path)
    return path


def test_sentencepiece_has_xlnets_special_ids_and_rules(spiece):
    sp = SentencePiece(spiece, lowercase=False)
    assert (sp.unk_id, sp.cls_id, sp.sep_id, sp.pad_id, sp.mask_id, sp.eod_id) == (0, 3, 4, 5, 6, 7)
    assert sp.symbols[8] == "<eop>"
    assert xlnet_preprocess("  A  café ``opened''  ", lowercase=True) == 'a cafe "opened"'
    pieces = sp.pieces("in 1990, the")
    assert "," in pieces and not any(p.endswith(",") and len(p) > 1 for p in pieces)  # the digit-comma rule
    starts = sp.word_starts()
    assert starts[sp.symbols.index(".")] and starts[sp.cls_id]
    assert not any(starts[i] for i, s in enumerate(sp.symbols) if s.isalpha() and not s.startswith("▁"))
    assert sp.encode(["the [UNK] cat"])[0].tolist().count(sp.unk_id) == 1
    again = spiece.parent / "again.model"
    SentencePiece.train(TEXT.splitlines(), 120, False, again)
    assert SentencePiece(again, lowercase=False).symbols == sp.symbols  # training is deterministic


def test_a_model_without_xlnets_specials_is_refused(tmp_path):
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(TEXT.splitlines()), model_writer=model,
                                             vocab_size=60, minloglevel=2, hard_vocab_limit=False)
    (tmp_path / "plain.model").write_bytes(model.getvalue())
    with pytest.raises(UserError, match="lacks <cls>"):
        SentencePiece(tmp_path / "plain.model", lowercase=False)


def test_documents_read_with_sentencepiece(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.txt").write_text(TEXT.replace(".\n", ".\n\n", 3))
    config = config_lib.defaults()
    config.data.update(dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), tokenizer="sentencepiece")
    config.data.sentencepiece.vocab_size = 120
    documents = corpora.load_documents(config.data)
    assert isinstance(documents.tokenizer, SentencePiece) and len(documents.tokenizer) <= 120
    assert len(documents.splits["train"].document_ends) == 4
    config.data.tokenizer = "wordpiece"  # another tokenizer is another cache entry
    assert not isinstance(corpora.load_documents(config.data).tokenizer, SentencePiece)


class Pieces:
    """A stand-in tokenizer: ids 0-9 are specials, every piece starts a word."""
    sep_id, cls_id, eod_id, pad_id = 4, 3, 7, 5

    def word_starts(self):
        return np.ones(1000, bool)


def counting_split(n_sentences=400, length=7) -> DocumentSplit:
    """Sentences of `length` consecutive ids from 10 up (so continuity is visible), 10 per document."""
    tokens = (10 + np.arange(n_sentences * length) % 990).astype(np.int32)
    return DocumentSplit(tokens, np.arange(1, n_sentences + 1) * length, np.arange(10, n_sentences + 1, 10))


def test_examples_have_xlnets_layout_and_continue_each_other():
    split = counting_split()
    stream = XLNetStream(split, Pieces(), batch_size=4, seq_len=32, reuse_len=12, bi_data=True, seed=0)
    pieces, flags = sentence_stream(split, Pieces.eod_id)
    parts = ([7] * 10 + [1]) * 40  # a document: ten sentences, then its <eod>; the flag flips at each
    np.testing.assert_array_equal(np.flatnonzero(pieces == Pieces.eod_id), np.arange(70, 40 * 71, 71))
    np.testing.assert_array_equal(flags, np.concatenate([np.full(n, i % 2 == 1) for i, n in enumerate(parts)]))
    labels = []
    for step in range(60):
        batch = stream.batch_at(step)
        tokens, types = batch["tokens"], batch["token_types"]
        assert tokens.shape == types.shape == (4, 32)
        for row in range(4):
            seps = np.flatnonzero(tokens[row] == Pieces.sep_id)
            assert len(seps) == 2 and seps[1] == 30 and tokens[row, 31] == Pieces.cls_id
            np.testing.assert_array_equal(types[row], [0] * (seps[0] + 1) + [1] * (30 - seps[0]) + [2])
            k = step % stream.n_examples
            np.testing.assert_array_equal(tokens[row, :12], stream.data[row, 12 * k:12 * k + 12])
            np.testing.assert_array_equal(tokens[row, 12:seps[0]], stream.data[row, 12 * k + 12:12 * k + seps[0]])
            if batch["next_sentence"][row]:  # B is what follows A (before A was trimmed from the right)
                b, a_end = tokens[row, seps[0] + 1:30], 12 * k + seps[0]
                assert any(np.array_equal(b, stream.data[row, start:start + len(b)])
                           for start in range(a_end, a_end + 20))
        np.testing.assert_array_equal(batch["functional"], np.isin(tokens, [Pieces.sep_id, Pieces.cls_id]))
        assert batch["reset"].all() == (step % stream.n_examples == 0)
        labels.extend(batch["next_sentence"])
    assert 0.3 < np.mean(labels) < 0.7
    np.testing.assert_array_equal(stream.data[2:], stream.data[:2, ::-1])  # bi_data: the reversed columns
    assert stream.batch_at(0)["reversed"].tolist() == [False, False, True, True]


def test_batches_are_a_function_of_the_step_and_hosts_split_rows():
    split = counting_split()
    one = XLNetStream(split, Pieces(), 4, 32, 12, False, seed=3)
    again = XLNetStream(split, Pieces(), 4, 32, 12, False, seed=3)
    for key in one.batch_at(9):
        np.testing.assert_array_equal(one.batch_at(9)[key], again.batch_at(9)[key])
    hosts = [XLNetStream(split, Pieces(), 4, 32, 12, False, seed=3, host_index=h, host_count=2) for h in (0, 1)]
    np.testing.assert_array_equal(np.concatenate([h.batch_at(9)["tokens"] for h in hosts]), one.batch_at(9)["tokens"])
    assert len(list(one.evaluation_batches())) == one.evaluation_steps() == one.n_examples


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=3, bi_data=True), "must be even"),
    (dict(reuse_len=29), "reuse_len=29"),
    (dict(batch_size=400), "too short"),
])
def test_clear_errors(kwargs, message):
    args = dict(batch_size=4, seq_len=32, reuse_len=12, bi_data=False, seed=0) | kwargs
    with pytest.raises(UserError, match=message):
        XLNetStream(counting_split(), Pieces(), **args)
