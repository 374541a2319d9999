"""Corpora: raw files (or the built-in quickstart language) -> token ids per split, cached on disk.

Two shapes, for the two kinds of objective: `load` gives a `Corpus`, one flat stream of token ids
per split (causal LM); `load_documents` gives `Documents`, WordPiece ids with sentence and
document boundaries (encoder objectives, which `examples.py` cuts into examples).

`data.corpus` names the reader. "text" reads any three files at `data.level`; "quickstart" samples
the built-in language; the benchmarks are read as the official Transformer-XL code reads them
(`pytorch/data_utils.py`, `utils/vocabulary.py`; reference/transformer_xl.md section 2.5), from
the files `xlpretrain data download NAME --dir DIR` puts in DIR (data.dir):

- wt103, wt2: train.txt valid.txt test.txt (or wiki.train.tokens ...); the words of every line,
  blank ones too, then <eos>; vocabulary: <eos>, then counted on train (wt103) or all splits (wt2).
- ptb: ptb.train.txt ptb.valid.txt ptb.test.txt; lowercased words, <eos> per line; counted on all splits.
- enwik8: the raw `enwik8` (or enwik8.zip), cut 90M/5M/5M bytes as prep_enwik8.py, or that script's
  train.txt valid.txt test.txt; every byte a symbol but newlines, which the official reading drops;
  counted on all splits (204 symbols). Level "byte": the evaluator reports bits per character.
- text8: the raw `text8` (or text8.zip), cut 90M/5M/5M as prep_text8.py, or its *.txt; every
  character a symbol, space as `_`, each split stripped at both ends; counted on all splits (27).
- lm1b: training-monolingual.tokenized.shuffled/news.en-000??-of-00100 (data.train is a glob), the
  heldout-00000 file as both valid and test, and 1b_word_vocab.txt (its first column, in order;
  unknown words are <UNK>); `<S>` before every sentence; training shards and sentences shuffled.
- tfds:NAME[/CONFIG]: a TFDS dataset prepared as array_record in data.dir (the TFDS data_dir; ""
  its default), read without TensorFlow: data.level symbols of each example's data.tfds_text_key
  feature, then <eos>; counted on train; valid is the validation split (else test), test the test split.

"Counted": most frequent first, ties in order of first appearance (`Counter.most_common`), so ids
are frequency-sorted as the adaptive softmax needs. data.train/valid/test name other files in data.dir.

A prepared corpus is a directory of `.npy` arrays (opened as memory maps), its vocabulary and
`meta.json`. It is keyed by a hash of the source files' contents and the reading options, so
editing a file or an option prepares it again, and nothing else does. Large corpora are read line
by line and written in pieces, never held whole in memory as text.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable, Iterator

import ml_collections
import numpy as np
from tqdm import tqdm

from xlpretrain.data.quickstart import QuickstartLanguage
from xlpretrain.data.vocab import EOS, SentencePiece, Vocab, WordPiece, tokenize
from xlpretrain.errors import UserError

SPLITS = ("train", "valid", "test")
DOCUMENT_FORMATS = ("wikitext", "lines")
# Bump when the way files are read changes, so that old caches are not reused.
READER_VERSION = 1

# The benchmarks `xlpretrain data download` fetches; data.corpus may also be "text", "quickstart" or TFDS_PREFIX + NAME.
NAMED_CORPORA = ("wt103", "wt2", "ptb", "enwik8", "text8", "lm1b")
TFDS_PREFIX = "tfds:"

LM1B_TRAIN = "training-monolingual.tokenized.shuffled/news.en-000??-of-00100"  # a glob: 99 shards
LM1B_HELDOUT = "heldout-monolingual.tokenized.shuffled/news.en.heldout-00000-of-00050"  # valid and test, as getdata.sh
LM1B_VOCAB = "1b_word_vocab.txt"
LM1B_START, LM1B_UNK = "<S>", "<UNK>"
# The official TF code seeds numpy with this before shuffling lm1b's training sentences (tf/data_utils.py).
LM1B_SHUFFLE_SEED = 123456

# data.corpus -> split -> the file names in data.dir it reads when data.<split> is "": the first that exists.
_WIKITEXT_FILES = {split: (f"{split}.txt", f"wiki.{split}.tokens") for split in SPLITS}
FILE_NAMES = {
    "text": {split: (f"{split}.txt",) for split in SPLITS},
    "wt103": _WIKITEXT_FILES,
    "wt2": _WIKITEXT_FILES,
    "ptb": {split: (f"ptb.{split}.txt",) for split in SPLITS},
    "enwik8": {split: (f"{split}.txt",) for split in SPLITS},  # prep_enwik8.py's output; else the raw file
    "text8": {split: (f"{split}.txt",) for split in SPLITS},   # prep_text8.py's output; else the raw file
    "lm1b": {"train": (LM1B_TRAIN,), "valid": (LM1B_HELDOUT,), "test": (LM1B_HELDOUT,)},
}
# Word corpora: (lowercase, the splits the vocabulary is counted on), as pytorch/data_utils.py `get_lm_corpus`.
WORD_CORPORA = {"wt103": (False, ("train",)), "wt2": (False, SPLITS), "ptb": (True, SPLITS)}
# Character corpora and their level: the evaluator reports bits per character for both.
CHARACTER_CORPORA = {"enwik8": "byte", "text8": "char"}
# enwik8 and text8: the last 2 x 5M bytes of the raw file are valid and test (prep_enwik8.py, prep_text8.py).
HELDOUT_SYMBOLS = 5_000_000
# The TFDS split read for each of ours: the first one the dataset has.
TFDS_SPLITS = {"train": ("train",), "valid": ("validation", "valid", "test"), "test": ("test", "validation", "valid")}


@dataclasses.dataclass
class Corpus:
    vocab: Vocab
    splits: dict[str, np.ndarray]        # split name -> flat int32 token ids
    level: str                           # "word", "char" or "byte"
    true_bits_per_token: float | None    # the entropy rate, when it is known (quickstart)


def default_cache_dir() -> Path:
    return Path(os.environ.get("XLPRETRAIN_CACHE", Path.home() / ".cache" / "xlpretrain"))


def load(data: ml_collections.ConfigDict) -> Corpus:
    """The corpus `data` describes, prepared on first use and read from the cache afterwards.

    A reader checks that the corpus's files are there and returns what the cache key is computed
    from and the function that prepares the cache directory."""
    reader = _tfds if data.corpus.startswith(TFDS_PREFIX) else READERS[data.corpus]
    key_source, prepare = reader(data)
    return _read(_cached(data, re.sub(r"[^\w.-]", "-", data.corpus), key_source, prepare))


def _quickstart(data: ml_collections.ConfigDict):
    language = dataclasses.asdict(QuickstartLanguage(seed=data.quickstart.seed))
    key_source = {"corpus": "quickstart", "sizes": data.quickstart.to_dict(), "language": language}
    return key_source, functools.partial(_prepare_quickstart, data.quickstart)


def _text(data: ml_collections.ConfigDict):
    files = _split_paths(data)
    key_source = {"corpus": "text", "level": data.level, "eos": data.eos, "files": _digests(files)}
    given = _given_vocabulary(data, key_source)
    return key_source, lambda out: _prepare_text(files, data.level, data.eos, given, out)


def _words(data: ml_collections.ConfigDict):
    files = _named_files(data)
    lowercase, counted = WORD_CORPORA[data.corpus]
    key_source = {"corpus": data.corpus, "files": _digests(files)}
    given = _given_vocabulary(data, key_source)
    return key_source, functools.partial(_prepare_words, files, lowercase, counted, given)


def _given_vocabulary(data: ml_collections.ConfigDict, key_source: dict) -> Path | None:
    """data.vocab_file, whose digest joins the cache key, or None: the vocabulary is counted."""
    if not data.vocab_file:
        return None
    key_source["vocab_file"] = _file_digest(Path(data.vocab_file), "data.vocab_file")
    return Path(data.vocab_file)


def _characters(data: ml_collections.ConfigDict):
    """enwik8 or text8: prep_enwik8.py's / prep_text8.py's three files if data.dir has them, else the raw file."""
    if _split_paths(data)["train"].is_file():
        files = _named_files(data)
        key_source = {"corpus": data.corpus, "files": _digests(files)}
        read = functools.partial(_read_prepared, data.corpus, files)
    else:
        candidates = [Path(data.dir) / name for name in (data.corpus, f"{data.corpus}.zip")]
        raw = next((path for path in candidates if path.is_file()), None)
        if raw is None:
            raise _missing(data, f"file {candidates[0]} (or {candidates[1].name}, or prepared train.txt etc.)")
        key_source = {"corpus": data.corpus, "files": {"raw": _file_digest(raw, "data.dir")},
                      "heldout": HELDOUT_SYMBOLS}
        read = functools.partial(_split_raw, data.corpus, raw)
    return key_source, lambda out: _prepare_characters(read(), CHARACTER_CORPORA[data.corpus], out)


def _lm1b(data: ml_collections.ConfigDict):
    paths = _split_paths(data)
    shards = sorted(paths["train"].parent.glob(paths["train"].name))
    if not shards:
        raise _missing(data, f"training shards {paths['train']}")
    for split in ("valid", "test"):
        if not paths[split].is_file():
            raise _missing(data, f"{split} file {paths[split]}")
    vocab_file = Path(data.dir) / LM1B_VOCAB
    if not vocab_file.is_file():
        raise _missing(data, f"vocabulary {vocab_file}")
    key_source = {"corpus": "lm1b", "train": [_file_digest(path, "data.dir and data.train") for path in shards],
                  **{split: _file_digest(paths[split], f"data.dir and data.{split}") for split in ("valid", "test")},
                  "vocab": _file_digest(vocab_file, "data.dir"), "shuffle_seed": LM1B_SHUFFLE_SEED}
    return key_source, functools.partial(_prepare_lm1b, shards, paths["valid"], paths["test"], vocab_file)


def _tfds(data: ml_collections.ConfigDict):
    """A TFDS dataset prepared as array_record, read with `tfds.data_source`'s machinery (no TensorFlow)."""
    import tensorflow_datasets as tfds

    name = data.corpus[len(TFDS_PREFIX):]
    try:
        builder = tfds.builder(name, data_dir=data.dir or None)
    except tfds.core.DatasetNotFoundError:
        raise UserError(f"TFDS has no dataset {name!r}, and data.dir={data.dir!r} holds none of that name; "
                        f"check data.corpus and data.dir") from None
    if not builder.is_prepared():
        raise UserError(f"TFDS dataset {name} is not prepared in {builder.data_dir}; prepare it in array_record format "
                        f"(tfds.builder({name!r}, data_dir=DIR, file_format='array_record').download_and_prepare()) "
                        f"and set data.dir=DIR")
    available = list(builder.info.splits)
    chosen = {}
    for split, candidates in TFDS_SPLITS.items():
        chosen[split] = next((c for c in candidates if c in available), None)
        if chosen[split] is None:
            raise UserError(f"TFDS dataset {name} has no {' or '.join(candidates)} split "
                            f"(it has {', '.join(available)})")
    try:
        sources = {split: builder.as_data_source(split=tfds_split) for split, tfds_split in chosen.items()}
    except NotImplementedError:
        raise UserError(f"TFDS dataset {name} in {builder.data_dir} is not in array_record format, which reading "
                        f"without TensorFlow needs; prepare it again with file_format='array_record'") from None
    key_source = {"corpus": "tfds", "dataset": builder.info.full_name, "level": data.level, "eos": data.eos,
                  "text_key": data.tfds_text_key,
                  "splits": {split: [chosen[split], len(source)] for split, source in sources.items()}}
    return key_source, functools.partial(_prepare_tfds, sources, data.tfds_text_key, data.level, data.eos)


READERS = {"quickstart": _quickstart, "text": _text, **dict.fromkeys(WORD_CORPORA, _words),
           **dict.fromkeys(CHARACTER_CORPORA, _characters), "lm1b": _lm1b}


def _split_paths(data: ml_collections.ConfigDict) -> dict[str, Path]:
    """Each split's file: data.<split> in data.dir, or else the first of the corpus's usual names there that exists."""
    directory, paths = Path(data.dir), {}
    for split in SPLITS:
        names = [data[split]] if data[split] else FILE_NAMES[data.corpus][split]
        paths[split] = next((directory / n for n in names if (directory / n).is_file()), directory / names[0])
    return paths


def _named_files(data: ml_collections.ConfigDict) -> dict[str, Path]:
    files = _split_paths(data)
    for split, path in files.items():
        if not path.is_file():
            raise _missing(data, f"{split} file {path}")
    return files


def _missing(data: ml_collections.ConfigDict, what: str) -> UserError:
    return UserError(f"{data.corpus} {what} not found; get it with `xlpretrain data download {data.corpus} "
                     f"--dir {data.dir or '.'}`, or set data.dir to the folder that holds it")


def _cached(data: ml_collections.ConfigDict, name: str, key_source: dict, prepare) -> Path:
    """The cache directory for `key_source`, filled by `prepare(directory)` unless it already is."""
    key_source["reader"] = READER_VERSION
    key = hashlib.sha256(json.dumps(key_source, sort_keys=True).encode()).hexdigest()[:16]
    cache_root = Path(data.cache_dir) if data.cache_dir else default_cache_dir()
    directory = cache_root / f"{name}-{key}"
    if not (directory / "meta.json").is_file():
        _write_atomically(directory, prepare)
    return directory


def _file_digest(path: Path, setting: str) -> str:
    """The SHA-256 of the file at `path`, which the config's `setting` names."""
    if not path.is_file():
        raise UserError(f"file {path} not found; set {setting} to an existing file")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _digests(files: dict[str, Path]) -> dict[str, str]:
    return {split: _file_digest(path, f"data.dir and data.{split}") for split, path in files.items()}


def _write_atomically(directory: Path, prepare) -> None:
    """Prepares into a temporary sibling and renames it, so an interrupted run leaves no half cache."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=directory.name + ".tmp-", dir=directory.parent))
    try:
        prepare(tmp)
        try:
            tmp.rename(directory)
        except OSError:  # another process prepared it first
            if not (directory / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read(directory: Path) -> Corpus:
    meta = json.loads((directory / "meta.json").read_text())
    splits = {split: np.load(directory / f"{split}.npy", mmap_mode="r") for split in SPLITS}
    return Corpus(vocab=Vocab.load(directory / "vocab.json"), splits=splits, level=meta["level"],
                  true_bits_per_token=meta.get("true_bits_per_token"))


def _save(out: Path, vocab: Vocab, splits: dict[str, np.ndarray], meta: dict) -> None:
    for split, ids in splits.items():
        np.save(out / f"{split}.npy", ids.astype(np.int32))
    _save_vocab(out, vocab, meta)


def _save_vocab(out: Path, vocab: Vocab, meta: dict) -> None:
    vocab.save(out / "vocab.json")
    (out / "meta.json").write_text(json.dumps(meta, indent=2))


def _write_ids(path: Path, pieces: Iterable[np.ndarray], where: str) -> None:
    """Writes the concatenated int32 `pieces` as the flat .npy array `path` without holding them all:
    the header is written first and given the length at the end (numpy pads headers so that they can)."""
    header = {"descr": "<i4", "fortran_order": False, "shape": (0,)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        start = f.tell()
        for ids in pieces:
            f.write(np.asarray(ids, "<i4").tobytes())
        count = (f.tell() - start) // 4
        if not count:
            raise UserError(f"{where} holds no tokens; check the file")
        f.seek(0)
        np.lib.format.write_array_header_1_0(f, dict(header, shape=(count,)))
        assert f.tell() == start


def _read_text(path: Path, split: str, level: str) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise UserError(f"{split} file {path} is empty; point data.{split} at a file with text in it")
    if level == "byte":
        return raw.decode("latin-1")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{split} file {path} is not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start}); "
                        f"re-encode it as UTF-8, or read it as bytes with data.level='byte'") from None
    # The official reader opens files in text mode, which turns \r\n and \r into \n.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 file one at a time, as the official reader's `for line in f` (text mode)."""
    try:
        with open(path, encoding="utf-8") as f:
            yield from f
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason}); re-encode it as UTF-8") from None


def _prepare_text(files: dict[str, Path], level: str, eos: bool, given: Path | None, out: Path) -> None:
    symbols = {split: tokenize(_read_text(path, split, level), level, eos) for split, path in files.items()}
    vocab = Vocab.read(given) if given else Vocab.from_counts(collections.Counter(symbols["train"]),
                                                              specials=[EOS] if eos else [])
    splits = {split: vocab.encode(syms, where=f"the {split} split ({files[split]})")
              for split, syms in symbols.items()}
    _save(out, vocab, splits, {"level": level, "files": {s: str(p) for s, p in files.items()}})


def _prepare_words(files: dict[str, Path], lowercase: bool, counted: tuple[str, ...], given: Path | None,
                   out: Path) -> None:
    """wt103, wt2, ptb: the words of every line, then <eos>; the vocabulary is the `given` word list,
    or <eos>, then the words of the `counted` splits by count."""
    def lines(path: Path) -> Iterator[list[str]]:
        for line in _lines(path):
            yield (line.lower() if lowercase else line).split() + [EOS]

    if given:
        vocab = Vocab.read(given)
    else:
        counts = collections.Counter()
        for split in counted:
            for symbols in lines(files[split]):
                counts.update(symbols)
        vocab = Vocab.from_counts(counts, specials=[EOS])
    for split, path in files.items():
        where = f"the {split} split ({path})"
        _write_ids(out / f"{split}.npy", (vocab.encode(symbols, where) for symbols in lines(path)), where)
    _save_vocab(out, vocab, {"level": "word", "files": {s: str(p) for s, p in files.items()}})


def _split_raw(corpus: str, path: Path) -> dict[str, np.ndarray]:
    """The raw enwik8 or text8 (or its zip) cut as prep_enwik8.py / prep_text8.py cut it, read as the
    official reader reads their output: enwik8's bytes without newlines (each line of the prepared
    file is split on whitespace, with no <eos>); text8 stripped at both ends, spaces written `_`."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            if corpus not in archive.namelist():
                raise UserError(f"{path} holds no file named {corpus}; is it the original {path.name}?")
            raw = archive.read(corpus)
    else:
        raw = path.read_bytes()
    if len(raw) <= 2 * HELDOUT_SYMBOLS:
        raise UserError(f"{path} has {len(raw):,} bytes; {corpus} needs more than the 2 x {HELDOUT_SYMBOLS:,} "
                        f"held out for valid and test")
    cut = len(raw) - 2 * HELDOUT_SYMBOLS
    parts = {"train": raw[:cut], "valid": raw[cut:cut + HELDOUT_SYMBOLS], "test": raw[cut + HELDOUT_SYMBOLS:]}
    if corpus == "enwik8":
        return {split: np.frombuffer(part.replace(b"\n", b""), np.uint8) for split, part in parts.items()}
    if np.frombuffer(raw, np.uint8).max() >= 128:  # prep_text8.py slices characters, which are bytes only in ASCII
        raise UserError(f"{path} is not ASCII text; is it text8?")
    return {split: np.frombuffer(part.strip().replace(b" ", b"_"), np.uint8) for split, part in parts.items()}


def _read_prepared(corpus: str, files: dict[str, Path]) -> dict[str, np.ndarray]:
    """The split files prep_enwik8.py or prep_text8.py wrote, read as the official reader does:
    whitespace-separated symbols, no <eos>."""
    read = _read_decimal_bytes if corpus == "enwik8" else _read_spaced_characters
    return {split: read(path) for split, path in files.items()}


def _read_decimal_bytes(path: Path) -> np.ndarray:
    """[symbols] uint8 from prep_enwik8.py's format: byte values in decimal, separated by spaces and line breaks."""
    error = UserError(f"{path} is not in prep_enwik8.py's format (byte values 0-255 in decimal, separated by "
                      f"spaces); point data.dir at the raw enwik8 instead")
    try:
        values = np.fromfile(path, dtype=np.int64, sep=" ")
    except ValueError:
        raise error from None
    if len(values) and (values.min() < 0 or values.max() > 255):
        raise error
    return values.astype(np.uint8)


def _read_spaced_characters(path: Path) -> np.ndarray:
    """[symbols] uint8 from prep_text8.py's format: single ASCII characters separated by spaces."""
    raw = np.fromfile(path, dtype=np.uint8)
    symbol = ~np.isin(raw, list(b" \t\n\r\x0b\x0c"))
    if (symbol[1:] & symbol[:-1]).any() or (raw >= 128).any():
        raise UserError(f"{path} is not in prep_text8.py's format (single ASCII characters separated by spaces); "
                        f"point data.dir at the raw text8 instead")
    return raw[symbol]


def _prepare_characters(splits: dict[str, np.ndarray], level: str, out: Path) -> None:
    """enwik8, text8: one symbol per byte value; the vocabulary is counted on all splits."""
    stream = np.concatenate([splits[split] for split in SPLITS])
    values, first = np.unique(stream, return_index=True)
    order = values[np.lexsort((first, -np.bincount(stream, minlength=256)[values]))]
    ids = np.zeros(256, np.int32)
    ids[order] = np.arange(len(order))
    for split, symbols in splits.items():
        _write_ids(out / f"{split}.npy", [ids[symbols]], f"the {split} split")
    _save_vocab(out, Vocab([chr(v) for v in order]), {"level": level})


def _prepare_lm1b(shards: list[Path], valid: Path, test: Path, vocab_file: Path, out: Path) -> None:
    """lm1b: the vocabulary file's first column in file order; training shards and the sentences in
    each shuffled with LM1B_SHUFFLE_SEED; valid and test in file order."""
    vocab = Vocab.read(vocab_file)
    for symbol in (LM1B_START, LM1B_UNK):
        if symbol not in vocab.index:
            raise UserError(f"{vocab_file} has no {symbol}; use the {LM1B_VOCAB} of `xlpretrain data download lm1b`")
    rng = np.random.default_rng(LM1B_SHUFFLE_SEED)
    shuffled = tqdm([shards[i] for i in rng.permutation(len(shards))], desc="lm1b training shards", disable=None)
    _write_ids(out / "train.npy", _sentences(shuffled, vocab, rng), "the lm1b training shards")
    for split, path in (("valid", valid), ("test", test)):
        _write_ids(out / f"{split}.npy", _sentences([path], vocab, None), str(path))
    _save_vocab(out, vocab, {"level": "word", "shuffle_seed": LM1B_SHUFFLE_SEED,
                             "files": {"train": [str(p) for p in shards], "valid": str(valid), "test": str(test)}})


def _sentences(paths: Iterable[Path], vocab: Vocab, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    """Ids of `<S> w1 .. wn` for every sentence (line) of `paths`, in random order within a file when
    `rng` is given, then one last `<S>`. The official iterator streams `<S> w1 .. wn <S>` per sentence
    and never feeds the trailing `<S>` as input, so it predicts w1 .. wn, <S> of each sentence: the
    same targets as this flat stream, in which the next sentence's `<S>` stands for the trailing one."""
    for path in paths:
        sentences = list(_lines(path))
        for i in rng.permutation(len(sentences)) if rng is not None else range(len(sentences)):
            yield vocab.encode([LM1B_START] + sentences[i].split(), str(path), unk=LM1B_UNK)
    yield vocab.encode([LM1B_START], "")


def _prepare_tfds(sources: dict, text_key: str, level: str, eos: bool, out: Path) -> None:
    """Each example's `text_key` text as `level` symbols (words: whitespace-separated; char: every
    character; byte: every UTF-8 byte), then <eos>; the vocabulary is counted on train."""
    first = sources["train"][0] if len(sources["train"]) else {}
    if text_key not in first:
        raise UserError(f"the TFDS examples have no feature {text_key!r} (they have {', '.join(first)}); "
                        f"set data.tfds_text_key")

    def examples(source) -> Iterator[list[str]]:
        for start in range(0, len(source), 1024):
            for example in source.__getitems__(list(range(start, min(start + 1024, len(source))))):
                text = example[text_key]
                text = text.decode("utf-8") if isinstance(text, bytes) else text
                if level == "word":
                    symbols = text.split()
                else:
                    symbols = list(text if level == "char" else text.encode("utf-8").decode("latin-1"))
                yield symbols + [EOS] if eos else symbols

    counts = collections.Counter()
    for symbols in examples(sources["train"]):
        counts.update(symbols)
    vocab = Vocab.from_counts(counts, specials=[EOS] if eos else [])
    for split, source in sources.items():
        where = f"the TFDS {split} split"
        _write_ids(out / f"{split}.npy", (vocab.encode(symbols, where) for symbols in examples(source)), where)
    _save_vocab(out, vocab, {"level": level})


def _prepare_quickstart(sizes: ml_collections.ConfigDict, out: Path) -> None:
    language = QuickstartLanguage(seed=sizes.seed)
    splits = {split: language.sample(sizes[f"{split}_tokens"], seed=i + 1) for i, split in enumerate(SPLITS)}
    _save(out, Vocab(language.symbols), splits,
          {"level": "word", "true_bits_per_token": language.entropy_rate_bits})


@dataclasses.dataclass
class DocumentSplit:
    tokens: np.ndarray          # flat int32 piece ids of every sentence, in order
    sentence_ends: np.ndarray   # [sentences] int64: sentence i is tokens[sentence_ends[i-1]:sentence_ends[i]]
    document_ends: np.ndarray   # [documents] int64: document d is sentences [document_ends[d-1], document_ends[d])


@dataclasses.dataclass
class Documents:
    tokenizer: WordPiece | SentencePiece
    splits: dict[str, DocumentSplit]


def load_documents(data: ml_collections.ConfigDict) -> Documents:
    """The text files of `data` as documents of subword-tokenized sentences, prepared on first use.

    `data.documents` says how files split into documents and sentences: "lines" is BERT's format
    (one sentence per line, a blank line between documents); "wikitext" reads WikiText (an article
    starts at each ` = Title = ` line, headings are dropped, paragraphs are split into sentences
    after ` . `, ` ? ` and ` ! `). `data.tokenizer` "wordpiece": the vocabulary is
    `data.wordpiece.vocab_file`, or one of `data.wordpiece.vocab_size` pieces trained on the train
    split with `tokenizers`; "sentencepiece": `data.sentencepiece.model_file` (XLNet's spiece.model),
    or a model of `data.sentencepiece.vocab_size` pieces trained with `sentencepiece` as XLNet's.
    """
    files = _split_paths(data)
    settings = data[data.tokenizer]
    given = settings.vocab_file if data.tokenizer == "wordpiece" else settings.model_file
    key_source = {"corpus": "documents", "format": data.documents, "lowercase": settings.lowercase,
                  "files": _digests(files)}
    if data.tokenizer != "wordpiece":  # WordPiece caches keep the key they had before there was a choice
        key_source["tokenizer"] = data.tokenizer
    if given:
        setting = f"data.{data.tokenizer}.{'vocab_file' if data.tokenizer == 'wordpiece' else 'model_file'}"
        key_source["vocab_file"] = _file_digest(Path(given), setting)
    else:
        key_source["vocab_size"] = settings.vocab_size
    tokenizer_class, vocab_name = TOKENIZER_FILES[data.tokenizer]

    def prepare(out: Path) -> None:
        _prepare_documents(files, data.documents, tokenizer_class, settings, given, out / vocab_name)

    directory = _cached(data, "documents", key_source, prepare)
    splits = {split: DocumentSplit(*(np.load(directory / f"{split}.{part}.npy", mmap_mode="r")
                                     for part in ("tokens", "sentence_ends", "document_ends")))
              for split in SPLITS}
    return Documents(tokenizer_class(directory / vocab_name, settings.lowercase), splits)


# data.tokenizer -> (its class, the file its vocabulary is kept in)
TOKENIZER_FILES = {"wordpiece": (WordPiece, "vocab.txt"), "sentencepiece": (SentencePiece, "spiece.model")}


WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")
WIKITEXT_SENTENCE_END = re.compile(r"(?<= [.?!]) ")


def _wikitext_documents(text: str) -> list[list[str]]:
    documents = []
    for line in text.split("\n"):
        if WIKITEXT_TITLE.match(line):
            documents.append([])
        elif line.strip() and not line.startswith(" = ") and documents:
            # Undo WikiText's tokenization of numbers and hyphens; <unk> is BERT's [UNK].
            line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".").replace("<unk>", "[UNK]")
            documents[-1].extend(s.strip() for s in WIKITEXT_SENTENCE_END.split(line.strip()) if s.strip())
    return [d for d in documents if d]


def _line_documents(text: str) -> list[list[str]]:
    documents = [[]]
    for line in text.split("\n"):
        if line.strip():
            documents[-1].append(line.strip())
        elif documents[-1]:
            documents.append([])
    return [d for d in documents if d]


def _prepare_documents(files: dict[str, Path], documents_format: str, tokenizer_class,
                       settings: ml_collections.ConfigDict, given: str, vocab_file: Path) -> None:
    reader = _wikitext_documents if documents_format == "wikitext" else _line_documents
    documents = {}
    for split, path in files.items():
        documents[split] = reader(_read_text(path, split, "word"))
        if not documents[split]:
            raise UserError(f"{split} file {path} holds no document in the {documents_format!r} format; "
                            f"set data.documents to one of {', '.join(DOCUMENT_FORMATS)}")
    out = vocab_file.parent
    if given:
        shutil.copyfile(given, vocab_file)
    else:
        tokenizer_class.train((s for d in documents["train"] for s in d), settings.vocab_size, settings.lowercase,
                              vocab_file)
    tokenizer = tokenizer_class(vocab_file, settings.lowercase)
    for split, docs in documents.items():
        sentences = tokenizer.encode([s for d in docs for s in d])
        np.save(out / f"{split}.tokens.npy", np.concatenate(sentences).astype(np.int32))
        np.save(out / f"{split}.sentence_ends.npy", np.cumsum([len(s) for s in sentences], dtype=np.int64))
        np.save(out / f"{split}.document_ends.npy", np.cumsum([len(d) for d in docs], dtype=np.int64))
    (out / "meta.json").write_text(json.dumps({"format": documents_format, "vocab_size": len(tokenizer),
                                               "files": {s: str(p) for s, p in files.items()}}, indent=2))
