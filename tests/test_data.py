"""Corpora, vocabularies and the ordered stream, on the real benchmark files and on small ones."""

import collections

import ml_collections
import numpy as np
import pytest

from xlpretrain.config import defaults
from xlpretrain.data import corpora
from xlpretrain.data.stream import OrderedStream
from xlpretrain.data.vocab import EOS, Vocab, tokenize
from xlpretrain.errors import UserError


def text_data(directory, cache_dir, level="word", eos=True, **files) -> ml_collections.ConfigDict:
    data = defaults().data
    data.update(dir=str(directory), level=level, eos=eos, cache_dir=str(cache_dir), **files)
    return data


@pytest.mark.parametrize("name, files, train_tokens, vocab_size", [
    ("wikitext-2", dict(train="train.txt", valid="valid.txt", test="test.txt"), 2_088_628, 33_278),
    ("ptb", dict(train="ptb.train.txt", valid="ptb.valid.txt", test="ptb.test.txt"), 929_589, 10_000),
])
def test_real_corpora_have_their_published_sizes(shared_data, cache_dir, name, files, train_tokens, vocab_size):
    """Token and type counts of ../shared/data/README.md (one <eos> per line, vocabulary from train)."""
    corpus = corpora.load(text_data(shared_data / name, cache_dir, **files))
    assert len(corpus.splits["train"]) == train_tokens
    assert len(corpus.vocab) == vocab_size
    assert corpus.vocab.symbols[0] == EOS
    # ids are in decreasing order of training frequency
    counts = np.bincount(corpus.splits["train"], minlength=vocab_size)
    assert (np.diff(counts[1:]) <= 0).all()


def test_ptb_char_level_reads_symbols_with_word_boundaries(shared_data, cache_dir):
    """PTB char files are space-separated symbols ('_' between words): 49 symbols plus <eos>.
    Each file ends with one space after its last newline, which `for line in f` (the official
    reader) reads as one more line: one <eos> more than the README's per-`wc -l`-line count."""
    corpus = corpora.load(text_data(shared_data / "ptb", cache_dir, train="ptb.char.train.txt",
                                    valid="ptb.char.valid.txt", test="ptb.char.test.txt"))
    assert len(corpus.vocab) == 50
    assert len(corpus.splits["train"]) == 5_017_482 + 1
    assert len(corpus.splits["valid"]) == 393_042 + 1


def test_char_and_byte_levels(shared_data, cache_dir, tmp_path):
    shakespeare = text_data(shared_data / "tinyshakespeare", cache_dir, level="char", eos=False,
                            train="input.txt", valid="input.txt", test="input.txt")
    corpus = corpora.load(shakespeare)
    assert len(corpus.vocab) == 65 and len(corpus.splits["train"]) == 1_115_394
    assert corpus.level == "char"

    (tmp_path / "a.bin").write_bytes(bytes([0, 255, 10, 200, 255]))
    binary = corpora.load(text_data(tmp_path, cache_dir, level="byte", eos=False,
                                    train="a.bin", valid="a.bin", test="a.bin"))
    assert len(binary.vocab) == 4 and binary.vocab.symbols[0] == chr(255)
    assert [ord(binary.vocab.symbols[i]) for i in binary.splits["test"]] == [0, 255, 10, 200, 255]


def test_vocabulary_order_and_tokenization():
    assert tokenize(" a b \n\n c\n", "word", eos=True) == ["a", "b", EOS, EOS, "c", EOS]
    assert tokenize("ab\nc", "char", eos=True) == ["a", "b", EOS, "c", EOS]
    assert tokenize("ab\nc", "char", eos=False) == ["a", "b", "\n", "c"]
    vocab = Vocab.from_counts(collections.Counter("b a c a b d".split()), specials=[EOS])
    assert vocab.symbols == [EOS, "b", "a", "c", "d"]  # ties keep first appearance


def test_unknown_tokens_map_to_unk_or_fail(tmp_path, cache_dir):
    (tmp_path / "train.txt").write_text("a b <unk> a\n")
    (tmp_path / "valid.txt").write_text("a zebra\n")
    (tmp_path / "test.txt").write_text("b\n")
    corpus = corpora.load(text_data(tmp_path, cache_dir))
    unk = corpus.vocab.index["<unk>"]
    assert corpus.splits["valid"].tolist() == [corpus.vocab.index["a"], unk, corpus.vocab.index[EOS]]

    (tmp_path / "train.txt").write_text("a b a\n")
    with pytest.raises(UserError, match="valid split .* 1 symbol types not in the vocabulary .*'zebra'"):
        corpora.load(text_data(tmp_path, cache_dir))


@pytest.mark.parametrize("content, message", [
    (None, r"/train.txt not found; set data.dir and data.train to an existing file$"),
    (b"  \n", "train file .* is empty"),
    (b"caf\xe9\n", r"not UTF-8 text \(byte 0xe9 at offset 3\).*data.level='byte'"),
])
def test_bad_data_files_get_one_line_errors(tmp_path, cache_dir, content, message):
    for split in ("valid", "test"):
        (tmp_path / f"{split}.txt").write_text("a\n")
    if content is not None:
        (tmp_path / "train.txt").write_bytes(content)
    with pytest.raises(UserError, match=message) as error:
        corpora.load(text_data(tmp_path, cache_dir))
    assert "\n" not in str(error.value)


def test_prepared_corpus_is_cached_by_content(tmp_path, cache_dir, monkeypatch):
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.txt").write_text("x y z\n")
    first = corpora.load(text_data(tmp_path, cache_dir))
    monkeypatch.setattr(corpora, "_prepare_text", lambda *a: pytest.fail("the cache was not reused"))
    assert corpora.load(text_data(tmp_path, cache_dir)).splits["train"].tolist() == first.splits["train"].tolist()
    monkeypatch.undo()
    (tmp_path / "train.txt").write_text("x y z w\n")  # new content, new cache entry
    assert len(corpora.load(text_data(tmp_path, cache_dir)).vocab) == 5


def test_stream_rows_continue_and_restart_identically():
    tokens = np.arange(1000, dtype=np.int32)
    stream = OrderedStream(tokens, batch_size=4, seq_len=10)
    assert stream.steps_per_epoch == (250 - 1) // 10
    for step in range(stream.steps_per_epoch - 1):
        now, nxt = stream.batch_at(step)["tokens"], stream.batch_at(step + 1)["tokens"]
        # the last token of step s is the first of step s+1: row b continues row b
        assert (now[:, -1] == nxt[:, 0]).all()
        assert (np.diff(now, axis=1) == 1).all()
    # column b is the b-th contiguous quarter of the data
    assert stream.batch_at(0)["tokens"][:, 0].tolist() == [0, 250, 500, 750]
    # a fresh stream (a restarted run) gives the same batch at the same step
    again = OrderedStream(tokens, batch_size=4, seq_len=10)
    assert (again.batch_at(17)["tokens"] == stream.batch_at(17)["tokens"]).all()
    # it wraps after an epoch, and marks the rows whose memory must be emptied
    epoch = stream.steps_per_epoch
    assert (stream.batch_at(epoch)["tokens"] == stream.batch_at(0)["tokens"]).all()
    assert stream.batch_at(epoch)["reset"].all() and not stream.batch_at(epoch + 1)["reset"].any()


def test_stream_hosts_read_their_own_columns():
    tokens = np.arange(1000, dtype=np.int32)
    whole = OrderedStream(tokens, batch_size=4, seq_len=10).batch_at(3)["tokens"]
    parts = [OrderedStream(tokens, 4, 10, host_index=h, host_count=2).batch_at(3)["tokens"] for h in range(2)]
    assert (np.concatenate(parts) == whole).all()
    with pytest.raises(UserError, match="not divisible by the 3 hosts"):
        OrderedStream(tokens, 4, 10, host_index=0, host_count=3)


def test_evaluation_batches_predict_every_token_once():
    tokens = np.arange(103, dtype=np.int32)
    stream = OrderedStream(tokens, batch_size=2, seq_len=8, name="test")
    predicted = [[] for _ in range(2)]
    for batch in stream.evaluation_batches():
        for row in range(2):
            predicted[row].extend(batch["tokens"][row, 1:][batch["mask"][row]].tolist())
    column_len = 103 // 2
    assert predicted == [list(range(1, column_len)), list(range(column_len + 1, 2 * column_len))]
    assert len(list(stream.evaluation_batches())) == stream.evaluation_steps()
