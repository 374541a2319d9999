"""The named corpora (wt103, wt2, ptb, enwik8, text8, lm1b, tfds:NAME) read as the official
Transformer-XL code reads them, and `xlpretrain data download|prepare` (against a local HTTP server)."""

import collections
import dataclasses
import hashlib
import http.server
import io
import re
import tarfile
import threading
import types
import zipfile

import numpy as np
import pytest

from xlpretrain import cli
from xlpretrain.config import defaults
from xlpretrain.data import corpora, download
from xlpretrain.data.vocab import EOS
from xlpretrain.errors import UserError


def named(corpus, directory, cache_dir, **settings):
    data = defaults().data
    data.update(corpus=corpus, dir=str(directory), cache_dir=str(cache_dir), **settings)
    return data


def official_vocabulary(paths, lowercase=False, specials=(EOS,)):
    """utils/vocabulary.py's `count_file` + `build_vocab`: `line.strip()`, optional lower(), `split()`, counted
    over `paths`; specials first, then `Counter.most_common()`."""
    counts = collections.Counter()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                counts.update((line.strip().lower() if lowercase else line.strip()).split())
    return list(specials) + [s for s, _ in counts.most_common() if s not in specials]


@pytest.mark.parametrize("corpus, folder, prefix, train_tokens, vocab_size, first_line", [
    ("wt2", "wikitext-2", "", 2_088_628, 33_278, [EOS, "=", "Valkyria", "Chronicles", "III", "=", EOS]),
    ("ptb", "ptb", "ptb.", 929_589, 10_000, ["aer", "banknote", "berlitz"]),
])
def test_wikitext2_and_ptb_as_the_official_reader(shared_data, cache_dir, corpus, folder, prefix, train_tokens,
                                                  vocab_size, first_line):
    """Both count the vocabulary on train+valid+test (pytorch/data_utils.py); PTB is lowercased."""
    corpus_data = corpora.load(named(corpus, shared_data / folder, cache_dir))
    assert len(corpus_data.splits["train"]) == train_tokens
    assert len(corpus_data.vocab) == vocab_size and corpus_data.vocab.symbols[0] == EOS
    assert corpus_data.level == "word"
    files = [shared_data / folder / f"{prefix}{split}.txt" for split in ("train", "valid", "test")]
    assert corpus_data.vocab.symbols == official_vocabulary(files, lowercase=corpus == "ptb")
    start = [corpus_data.vocab.symbols[i] for i in corpus_data.splits["train"][:len(first_line)]]
    assert start == first_line


def test_wt103_counts_train_only_and_reads_the_original_file_names(tmp_path, cache_dir):
    (tmp_path / "wiki.train.tokens").write_text(" a b <unk> \n \n b\n")
    (tmp_path / "wiki.valid.tokens").write_text(" b zebra\n")
    (tmp_path / "wiki.test.tokens").write_text(" a\n")
    corpus = corpora.load(named("wt103", tmp_path, cache_dir))
    assert corpus.vocab.symbols == [EOS, "b", "a", "<unk>"]  # train only; a and <unk> tie, a came first
    assert corpus.splits["train"].tolist() == [2, 1, 3, 0, 0, 1, 0]  # blank lines end in <eos> too
    assert corpus.splits["valid"].tolist() == [1, 3, 0]  # zebra, unseen in train, is <unk>


def test_a_given_word_list_sets_the_ids(tmp_path, cache_dir):
    """data.vocab_file replaces the counted vocabulary (a release's ids); unknown words become <unk>,
    and a different word list is a different cache entry."""
    for name, text in (("wiki.train.tokens", " a b b\n"), ("wiki.valid.tokens", " c\n"), ("wiki.test.tokens", " a\n")):
        (tmp_path / name).write_text(text)
    words = tmp_path / "words.txt"
    words.write_text("<unk> 5\nb 2\n<eos> 1\na 1\nb 0\n")  # first column; a repeat keeps its first id
    corpus = corpora.load(named("wt103", tmp_path, cache_dir, vocab_file=str(words)))
    assert corpus.vocab.symbols == ["<unk>", "b", "<eos>", "a"]
    assert corpus.splits["train"].tolist() == [3, 1, 1, 2] and corpus.splits["valid"].tolist() == [0, 2]
    words.write_text("<eos>\na\nb\n")
    with pytest.raises(UserError, match="valid split .* 1 symbol types not in the vocabulary .*'c'"):
        corpora.load(named("wt103", tmp_path, cache_dir, vocab_file=str(words)))


def test_ptb_lowercases_and_missing_files_name_the_download(tmp_path, cache_dir):
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.{split}.txt").write_text(" The the N \n")
    assert corpora.load(named("ptb", tmp_path, cache_dir)).vocab.symbols == [EOS, "the", "n"]
    (tmp_path / "ptb.test.txt").unlink()
    with pytest.raises(UserError, match=rf"ptb test file {tmp_path}/ptb.test.txt not found; get it with "
                                        rf"`xlpretrain data download ptb --dir {tmp_path}`") as error:
        corpora.load(named("ptb", tmp_path, cache_dir))
    assert "\n" not in str(error.value)


def prep_enwik8(raw: bytes, heldout: int, directory):
    """Writes train/valid/test.txt as awd-lstm-lm's prep_enwik8.py does."""
    parts = raw[:-2 * heldout], raw[-2 * heldout:-heldout], raw[-heldout:]
    for name, part in zip(("train", "valid", "test"), parts):
        (directory / f"{name}.txt").write_text(" ".join(str(c) if c != 10 else "\n" for c in part))


def prep_text8(text: str, heldout: int, directory):
    """Writes train/valid/test.txt as transformer-xl's prep_text8.py does."""
    parts = text[:-2 * heldout], text[-2 * heldout:-heldout], text[-heldout:]
    for name, part in zip(("train", "valid", "test"), parts):
        (directory / f"{name}.txt").write_text(" ".join("_" if c == " " else c for c in part.strip()))


def test_enwik8_drops_newlines_and_reads_raw_zip_and_prepared_alike(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setattr(corpora, "HELDOUT_SYMBOLS", 40)
    rng = np.random.default_rng(0)
    raw = bytes(rng.choice([10, 32, 60, 97, 98, 99, 200, 255], size=300, p=[.1, .2, .1, .2, .2, .1, .05, .05]))
    raw_dir, zip_dir, prepared_dir = (tmp_path / name for name in ("raw", "zip", "prepared"))
    for directory in (raw_dir, zip_dir, prepared_dir):
        directory.mkdir()
    (raw_dir / "enwik8").write_bytes(raw)
    with zipfile.ZipFile(zip_dir / "enwik8.zip", "w") as z:
        z.writestr("enwik8", raw)
    prep_enwik8(raw, 40, prepared_dir)

    corpus = corpora.load(named("enwik8", raw_dir, cache_dir))
    assert corpus.level == "byte"  # reported in bits per character
    # the official reading: the prepared files' lines split on whitespace, no <eos>, vocabulary on all splits
    assert corpus.vocab.symbols == [chr(int(s)) for s in official_vocabulary(
        [prepared_dir / f"{split}.txt" for split in ("train", "valid", "test")], specials=())]
    decoded = {split: bytes(ord(corpus.vocab.symbols[i]) for i in ids) for split, ids in corpus.splits.items()}
    assert decoded == {"train": raw[:-80].replace(b"\n", b""), "valid": raw[-80:-40].replace(b"\n", b""),
                       "test": raw[-40:].replace(b"\n", b"")}
    for other in (zip_dir, prepared_dir):
        again = corpora.load(named("enwik8", other, cache_dir))
        assert again.vocab.symbols == corpus.vocab.symbols
        assert all((again.splits[s] == corpus.splits[s]).all() for s in corpora.SPLITS)

    (prepared_dir / "valid.txt").write_text("60 47 x 1")
    with pytest.raises(UserError, match="not in prep_enwik8.py's format"):
        corpora.load(named("enwik8", prepared_dir, cache_dir))


def test_text8_strips_each_split_and_writes_spaces_as_underscores(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setattr(corpora, "HELDOUT_SYMBOLS", 11)
    text = " anarchism originated as a term of abuse first used against early working class radicals "
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "text8").write_text(text)
    corpus = corpora.load(named("text8", tmp_path / "raw", cache_dir))
    assert corpus.level == "char"
    decoded = {split: "".join(corpus.vocab.symbols[i] for i in ids) for split, ids in corpus.splits.items()}
    assert decoded == {split: part.strip().replace(" ", "_") for split, part in
                       (("train", text[:-22]), ("valid", text[-22:-11]), ("test", text[-11:]))}
    assert decoded["train"].startswith("anarchism_originated") and not decoded["test"].endswith("_")

    (tmp_path / "prepared").mkdir()
    prep_text8(text, 11, tmp_path / "prepared")
    prepared = corpora.load(named("text8", tmp_path / "prepared", cache_dir))
    assert prepared.vocab.symbols == official_vocabulary(
        [tmp_path / "prepared" / f"{split}.txt" for split in ("train", "valid", "test")], specials=())
    assert prepared.vocab.symbols == corpus.vocab.symbols
    assert all((prepared.splits[s] == corpus.splits[s]).all() for s in corpora.SPLITS)


LM1B_VOCAB = ["<S>", "</S>", "<UNK>", "the", "cat", "sat", "dog"]


def lm1b_files(directory):
    (directory / corpora.LM1B_VOCAB).write_text("".join(f"{w} {100 - i}\n" for i, w in enumerate(LM1B_VOCAB)))
    train = directory / "training-monolingual.tokenized.shuffled"
    train.mkdir(parents=True)
    shards = {1: ["the cat sat", "the cat", "cat sat", "sat", "the sat cat", "cat the gnu"],
              2: ["the dog", "dog sat", "dog", "the dog sat", "sat dog"]}
    for shard, sentences in shards.items():
        (train / f"news.en-{shard:05d}-of-00100").write_text("".join(s + "\n" for s in sentences))
    (train / "README").write_text("not a shard\n")
    heldout = directory / corpora.LM1B_HELDOUT
    heldout.parent.mkdir(parents=True)
    heldout.write_text("the cat\nthe zebra sat\n")
    return shards


def test_lm1b_sentences_start_with_s_and_training_shards_are_shuffled(tmp_path, cache_dir):
    shards = lm1b_files(tmp_path)
    corpus = corpora.load(named("lm1b", tmp_path, cache_dir))
    vocab = corpus.vocab
    assert vocab.symbols == LM1B_VOCAB
    s, unk = vocab.index["<S>"], vocab.index["<UNK>"]
    # valid = test = the heldout file in order: <S> before each sentence and one at the end, unknown words <UNK>
    expected = [s, vocab.index["the"], vocab.index["cat"], s, vocab.index["the"], unk, vocab.index["sat"], s]
    assert corpus.splits["valid"].tolist() == expected == corpus.splits["test"].tolist()

    train = corpus.splits["train"].tolist()
    assert train[0] == s and train[-1] == s
    sentences = [tuple(sentence) for sentence in _split_at(train[:-1], s)]
    in_file_order = {k: [tuple(vocab.encode(line.split(), "", unk="<UNK>").tolist()) for line in lines]
                     for k, lines in shards.items()}
    first = 1 if sentences[0] in in_file_order[1] else 2
    by_shard = in_file_order[first] + in_file_order[3 - first]
    assert sorted(sentences) == sorted(by_shard)  # every training sentence once, unknown words <UNK>
    assert set(sentences[:len(in_file_order[first])]) == set(in_file_order[first])  # a shard's sentences together
    assert sentences != by_shard  # in shuffled order
    # the same seed in a fresh cache gives the same stream
    again = corpora.load(named("lm1b", tmp_path, cache_dir / "fresh"))
    assert again.splits["train"].tolist() == train


def _split_at(ids, separator):
    out = []
    for i in ids:
        if i == separator:
            out.append([])
        else:
            out[-1].append(i)
    return out


def test_tfds_reads_array_record_datasets_without_tensorflow(tmp_path, cache_dir):
    import tensorflow_datasets as tfds

    class XlpretrainTinyText(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")
        splits = {"train": ["the cat sat", "the dog", "the end"], "validation": ["cat dog"], "test": ["the end"]}

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, disable_shuffling=True,
                                         features=tfds.features.FeaturesDict({"content": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {name: self._generate_examples(lines) for name, lines in self.splits.items()}

        def _generate_examples(self, lines):
            for i, line in enumerate(lines):
                yield i, {"content": line}

    XlpretrainTinyText(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    data = named("tfds:xlpretrain_tiny_text", tmp_path, cache_dir, tfds_text_key="content")
    corpus = corpora.load(data)
    assert corpus.vocab.symbols == [EOS, "the", "cat", "sat", "dog", "end"]
    decode = lambda split: [corpus.vocab.symbols[i] for i in corpus.splits[split]]  # noqa: E731
    assert decode("train") == ["the", "cat", "sat", EOS, "the", "dog", EOS, "the", "end", EOS]
    assert decode("valid") == ["cat", "dog", EOS] and decode("test") == ["the", "end", EOS]

    chars = corpora.load(named("tfds:xlpretrain_tiny_text", tmp_path, cache_dir / "chars", tfds_text_key="content",
                               level="char"))
    assert "".join(chars.vocab.symbols[i] for i in chars.splits["valid"][:-1]) == "cat dog"
    with pytest.raises(UserError, match=r"no feature 'text' \(they have content\); set data.tfds_text_key"):
        corpora.load(named("tfds:xlpretrain_tiny_text", tmp_path, cache_dir))
    with pytest.raises(UserError, match="TFDS has no dataset 'no_such_corpus'"):
        corpora.load(named("tfds:no_such_corpus", tmp_path, cache_dir))


@pytest.fixture
def server(monkeypatch):
    """An HTTP server on 127.0.0.1 serving `files` (path -> bytes), with byte ranges unless `ranges` is False."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    state = types.SimpleNamespace(files={}, ranges=True, requests=[], break_after=None)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests.append((self.path, self.headers.get("Range")))
            body = state.files.get(self.path)
            if body is None:
                return self.send_error(404)
            start = int(re.fullmatch(r"bytes=(\d+)-", self.headers["Range"])[1]) if self.headers["Range"] else 0
            if start and state.ranges:
                if start >= len(body):
                    return self.send_error(416)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                start = 0
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            if state.break_after:  # the connection drops after that many bytes, once
                self.wfile.write(body[start:start + state.break_after])
                self.close_connection, state.break_after = True, None
            else:
                self.wfile.write(body[start:])

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{httpd.server_port}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("ranges", [True, False])
def test_a_broken_download_resumes(server, tmp_path, ranges):
    content, url, path = bytes(range(256)) * 1000, f"{server.url}/big.bin", tmp_path / "big.bin"
    server.files["/big.bin"], server.ranges, server.break_after = content, ranges, 100_000
    with pytest.raises(UserError, match=rf"the download of {url} broke off .*; run again to resume it"):
        download.fetch(url, path, sha256(content))
    assert (tmp_path / "big.bin.part").stat().st_size == 100_000 and not path.exists()
    download.fetch(url, path, sha256(content))
    assert path.read_bytes() == content and not (tmp_path / "big.bin.part").exists()
    # the second request asks for the rest; a server without ranges sends it all again, which replaces the part
    assert server.requests == [("/big.bin", None), ("/big.bin", "bytes=100000-")]
    download.fetch(url, path, sha256(content))  # there already: checked, not fetched
    assert len(server.requests) == 2
    # an earlier try that got every byte but was not renamed: the server answers 416 to the range after the end
    (tmp_path / "big.bin").rename(tmp_path / "again.bin.part")
    server.files["/again.bin"] = content
    download.fetch(f"{server.url}/again.bin", tmp_path / "again.bin", sha256(content))
    assert (tmp_path / "again.bin").read_bytes() == content


def test_download_with_a_wrong_checksum_fails_in_one_line(server, tmp_path, capsys):
    server.files["/f.txt"], digest = b"hello\n", sha256(b"hello\n")
    with pytest.raises(UserError, match=rf"{server.url}/f.txt gave a file with sha256 {digest}, expected 0+; "
                                        rf"removed .*f.txt.part, run again") as error:
        download.fetch(f"{server.url}/f.txt", tmp_path / "f.txt", "0" * 64)
    assert "\n" not in str(error.value) and not list(tmp_path.iterdir())
    download.fetch(f"{server.url}/f.txt", tmp_path / "f.txt", None)
    assert f"sha256 {digest} (not verified" in capsys.readouterr().out
    with pytest.raises(UserError, match="HTTP 404"):
        download.fetch(f"{server.url}/missing.txt", tmp_path / "missing.txt", None)


def test_data_download_and_prepare_commands(server, tmp_path, monkeypatch, capsys):
    """`xlpretrain data download` lays archives out as data.dir expects; `data prepare` caches and reports."""
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: None)  # the command's malloc tuning, not for pytest
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for split, text in (("train", " a b\n\n b\n"), ("valid", " b a\n"), ("test", " a\n")):
            z.writestr(f"wikitext-2/wiki.{split}.tokens", text)
        z.writestr("wikitext-2/README", "not extracted")
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt", "ptb.char.train.txt", "README"):
            member = tarfile.TarInfo(f"./simple-examples/data/{name}")
            member.size = 4
            tar.addfile(member, io.BytesIO(b" x \n"))
    server.files.update({"/wikitext-2-v1.zip": archive.getvalue(), "/simple-examples.tgz": tgz.getvalue()})
    monkeypatch.setitem(download.SOURCES, "wt2", [download.Remote(
        f"{server.url}/wikitext-2-v1.zip", sha256(archive.getvalue()), *download.WIKITEXT_MEMBERS)])
    ptb = download.SOURCES["ptb"][0]  # its members pattern, served here
    monkeypatch.setitem(download.SOURCES, "ptb", [dataclasses.replace(ptb, url=f"{server.url}/simple-examples.tgz")])

    cli.main(["data", "download", "wt2", "--dir", str(tmp_path / "wt2")])
    assert sorted(p.name for p in (tmp_path / "wt2").iterdir()) == ["test.txt", "train.txt", "valid.txt",
                                                                     "wikitext-2-v1.zip"]
    cli.main(["data", "download", "ptb", "--dir", str(tmp_path / "ptb")])
    assert sorted(p.name for p in (tmp_path / "ptb").iterdir()) == [
        "ptb.char.train.txt", "ptb.test.txt", "ptb.train.txt", "ptb.valid.txt", "simple-examples.tgz"]
    capsys.readouterr()

    cli.main(["data", "prepare", "wt2", "--src", str(tmp_path / "wt2"), "--cache", str(tmp_path / "cache")])
    assert capsys.readouterr().out == "wt2: train 6, valid 3, test 2 tokens; vocabulary 3 (word level)\n"

    with pytest.raises(SystemExit) as exit_:
        cli.main(["data", "prepare", "wt5", "--src", str(tmp_path)])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("xlpretrain: error: data.corpus 'wt5' is not one of quickstart, text, wt103, wt2, ptb")
    assert error.count("\n") == 1
    with pytest.raises(SystemExit):
        cli.main(["data", "download", "wt5", "--dir", str(tmp_path)])
    assert "no download for 'wt5'; choose one of wt103, wt2, ptb, enwik8, text8, lm1b" in capsys.readouterr().err
    (tmp_path / "ptb" / "simple-examples.tgz").write_text("<html>a login page, not the archive</html>")
    with pytest.raises(SystemExit):  # ptb has no published checksum, so the archive is checked by opening it
        cli.main(["data", "download", "ptb", "--dir", str(tmp_path / "ptb")])
    assert "simple-examples.tgz is not a readable archive" in capsys.readouterr().err
