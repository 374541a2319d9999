"""Corpora: raw files (or the built-in quickstart language) -> token ids per split, cached on disk.

Two shapes, for the two kinds of objective: `load` gives a `Corpus`, one flat stream of token ids
per split (causal LM); `load_documents` gives `Documents`, WordPiece ids with sentence and
document boundaries (encoder objectives, which `examples.py` cuts into examples).

A prepared corpus is a directory of `.npy` arrays (opened as memory maps), its vocabulary and
`meta.json`. It is keyed by a hash of the source files' contents and the reading options, so
editing a file or an option prepares it again, and nothing else does.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import ml_collections
import numpy as np

from xlpretrain.data.quickstart import QuickstartLanguage
from xlpretrain.data.vocab import EOS, SentencePiece, Vocab, WordPiece, tokenize
from xlpretrain.errors import UserError

SPLITS = ("train", "valid", "test")
DOCUMENT_FORMATS = ("wikitext", "lines")
# Bump when the way files are read changes, so that old caches are not reused.
READER_VERSION = 1


@dataclasses.dataclass
class Corpus:
    vocab: Vocab
    splits: dict[str, np.ndarray]        # split name -> flat int32 token ids
    level: str                           # "word", "char" or "byte"
    true_bits_per_token: float | None    # the entropy rate, when it is known (quickstart)


def default_cache_dir() -> Path:
    return Path(os.environ.get("XLPRETRAIN_CACHE", Path.home() / ".cache" / "xlpretrain"))


def load(data: ml_collections.ConfigDict) -> Corpus:
    """The corpus `data` describes, prepared on first use and read from the cache afterwards."""
    if data.corpus == "quickstart":
        language = dataclasses.asdict(QuickstartLanguage(seed=data.quickstart.seed))
        key_source = {"corpus": "quickstart", "sizes": data.quickstart.to_dict(), "language": language}

        def prepare(out: Path) -> None:
            _prepare_quickstart(data.quickstart, out)
    else:
        files = {split: Path(data.dir) / data[split] for split in SPLITS}
        key_source = {"corpus": "text", "level": data.level, "eos": data.eos,
                      "files": {split: _file_digest(path, split) for split, path in files.items()}}

        def prepare(out: Path) -> None:
            _prepare_text(files, data.level, data.eos, out)
    return _read(_cached(data, data.corpus, key_source, prepare))


def _cached(data: ml_collections.ConfigDict, name: str, key_source: dict, prepare) -> Path:
    """The cache directory for `key_source`, filled by `prepare(directory)` unless it already is."""
    key_source["reader"] = READER_VERSION
    key = hashlib.sha256(json.dumps(key_source, sort_keys=True).encode()).hexdigest()[:16]
    cache_root = Path(data.cache_dir) if data.cache_dir else default_cache_dir()
    directory = cache_root / f"{name}-{key}"
    if not (directory / "meta.json").is_file():
        _write_atomically(directory, prepare)
    return directory


def _file_digest(path: Path, split: str) -> str:
    if not path.is_file():
        raise UserError(f"{split} file {path} not found; set data.dir and data.{split} to an existing file")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    vocab.save(out / "vocab.json")
    (out / "meta.json").write_text(json.dumps(meta, indent=2))


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


def _prepare_text(files: dict[str, Path], level: str, eos: bool, out: Path) -> None:
    symbols = {split: tokenize(_read_text(path, split, level), level, eos) for split, path in files.items()}
    vocab = Vocab.from_counts(collections.Counter(symbols["train"]), specials=[EOS] if eos else [])
    splits = {split: vocab.encode(syms, where=f"the {split} split ({files[split]})")
              for split, syms in symbols.items()}
    _save(out, vocab, splits, {"level": level, "files": {s: str(p) for s, p in files.items()}})


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
    files = {split: Path(data.dir) / data[split] for split in SPLITS}
    settings = data[data.tokenizer]
    given = settings.vocab_file if data.tokenizer == "wordpiece" else settings.model_file
    key_source = {"corpus": "documents", "format": data.documents, "lowercase": settings.lowercase,
                  "files": {split: _file_digest(path, split) for split, path in files.items()}}
    if data.tokenizer != "wordpiece":  # WordPiece caches keep the key they had before there was a choice
        key_source["tokenizer"] = data.tokenizer
    if given:
        key_source["vocab_file"] = _file_digest(Path(given), f"data.{data.tokenizer} vocabulary")
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
