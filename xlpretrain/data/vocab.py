"""Vocabularies: symbols <-> ids, built from a training split in frequency order.

Tokenization follows the official Transformer-XL reader (`utils/vocabulary.py`): a word-level line
is `line.split()` plus `<eos>`; the vocabulary is the special symbols first, then every training
symbol by decreasing count, ties in order of first appearance (`Counter.most_common`). A given
word list (`Vocab.read`: a Transformer-XL release's `vocab.pkl`, or a text file of one word per
line such as lm1b's) replaces the counted one.
"""

from __future__ import annotations

import builtins
import collections
import io
import json
import pickle
import unicodedata
import zipfile
from pathlib import Path

import numpy as np

from xlpretrain.errors import UserError

EOS = "<eos>"
UNK = "<unk>"


class Vocab:
    def __init__(self, symbols: list[str]):
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        if len(self.index) != len(self.symbols):
            raise ValueError("vocabulary symbols must be unique")

    def __len__(self) -> int:
        return len(self.symbols)

    @classmethod
    def from_counts(cls, counts: collections.Counter, specials: list[str]) -> Vocab:
        """Specials first, then by decreasing count (ties: first appearance, as `Counter.most_common`)."""
        ordered = [s for s, _ in counts.most_common() if s not in specials]
        return cls(list(specials) + ordered)

    def encode(self, symbols: list[str], where: str, unk: str = UNK) -> np.ndarray:
        """Ids of `symbols`; symbols unknown to the vocabulary become `unk` if it has one."""
        unk_id = self.index.get(unk)
        if unk_id is None:
            missing = [s for s in dict.fromkeys(symbols) if s not in self.index]
            if missing:
                raise UserError(
                    f"{where} has {len(missing)} symbol types not in the vocabulary (e.g. {missing[0]!r}) "
                    f"and the vocabulary has no {unk}; add them to the training data (or the given "
                    f"vocabulary) or map them to {unk} there")
            return np.fromiter((self.index[s] for s in symbols), np.int32, len(symbols))
        return np.fromiter((self.index.get(s, unk_id) for s in symbols), np.int32, len(symbols))

    @classmethod
    def read(cls, path: str | Path) -> Vocab:
        """A given word list in id order: `idx2sym` of a `.pkl` (HuggingFace's `TransfoXLTokenizer`
        file, a pickle or a torch.save file, read without running anything it names and without
        torch), else the first column of every non-blank line (repeats keep their first id)."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"vocabulary file {path} not found")
        if path.suffix == ".pkl":
            state = _unpickle(path)
            if not isinstance(state, dict) or not isinstance(state.get("idx2sym"), list):
                raise UserError(f"{path} holds no idx2sym word list; is it a TransfoXLTokenizer vocabulary?")
            return cls([str(word) for word in state["idx2sym"]])
        with open(path, encoding="utf-8") as f:
            return cls(list(dict.fromkeys(line.split()[0] for line in f if line.strip())))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.symbols, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls(json.loads(path.read_text()))


def tokenize(text: str, level: str, eos: bool) -> list[str]:
    """Symbols of `text` read line by line as the official reader does (`for line in f`).

    word: whitespace-separated tokens; char and byte: every character of the line (byte-level text
    arrives decoded as latin-1, one character per byte). With `eos`, every line ends in `<eos>`;
    without it, char and byte levels keep the newline as a symbol and word level drops it.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if level == "word":
        out = []
        for line in lines:
            out.extend(line.split())
            if eos:
                out.append(EOS)
        return out
    if not eos:
        return list(text)
    out = []
    for line in lines:
        out.extend(line)
        out.append(EOS)
    return out


# BERT's special tokens; a WordPiece vocabulary trained here puts them first, so [PAD] is id 0.
PAD, WP_UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
WORDPIECE_SPECIALS = [PAD, WP_UNK, CLS, SEP, MASK]


class WordPiece:
    """BERT's WordPiece tokenizer (HuggingFace `tokenizers`) over a `vocab.txt`: one piece per line,
    line number = id, continuation pieces prefixed with `##`."""

    def __init__(self, vocab_file: Path, lowercase: bool):
        from tokenizers import BertWordPieceTokenizer

        self.symbols = Path(vocab_file).read_text(encoding="utf-8").splitlines()
        index = {s: i for i, s in enumerate(self.symbols)}
        missing = [s for s in WORDPIECE_SPECIALS if s not in index]
        if missing:
            raise UserError(f"WordPiece vocabulary {vocab_file} lacks {', '.join(missing)}; "
                            f"use a BERT vocab.txt or leave data.wordpiece.vocab_file empty to train one")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (index[s] for s in WORDPIECE_SPECIALS)
        self.tokenizer = BertWordPieceTokenizer(str(vocab_file), lowercase=lowercase)

    def __len__(self) -> int:
        return len(self.symbols)

    @staticmethod
    def train(sentences, vocab_size: int, lowercase: bool, vocab_file: Path) -> None:
        """Learns a vocabulary of `vocab_size` pieces from an iterable of sentences; writes `vocab_file`."""
        from tokenizers import BertWordPieceTokenizer

        tokenizer = BertWordPieceTokenizer(lowercase=lowercase)
        tokenizer.train_from_iterator(sentences, vocab_size=vocab_size, min_frequency=2,
                                      special_tokens=WORDPIECE_SPECIALS, show_progress=False)
        # The trainer breaks ties between equally frequent merges differently from run to run (a few
        # of 8,192 pieces differ), and numbers the alphabet in hash order. Sorting the pieces at
        # least makes the ids a function of the set of pieces; the cache keeps one trained set.
        pieces = sorted(set(tokenizer.get_vocab()) - set(WORDPIECE_SPECIALS))
        Path(vocab_file).write_text("".join(s + "\n" for s in WORDPIECE_SPECIALS + pieces), encoding="utf-8")

    def encode(self, sentences: list[str]) -> list[np.ndarray]:
        """Piece ids of each sentence, without special tokens."""
        return [np.asarray(e.ids, np.int32) for e in self.tokenizer.encode_batch(sentences, add_special_tokens=False)]

    def word_starts(self) -> np.ndarray:
        """[vocab] True for pieces that begin a word (all but the `##` continuations)."""
        return np.asarray([not s.startswith("##") for s in self.symbols])


# XLNet's specials: a model trained by `SentencePiece.train` (and XLNet's released spiece.model)
# has <unk> 0, <s> 1, </s> 2, then these control symbols 3-7 and <eop> 8.
SP_CONTROL = ["<cls>", "<sep>", "<pad>", "<mask>", "<eod>"]
SP_USER_DEFINED = ["<eop>", ".", "(", ")", '"', "-", "–", "£", "€"]
SP_UNDERLINE = "▁"
# XLNet's `_is_start_piece`: punctuation pieces begin a word.
SP_PUNCTUATION = set('!"#$%&"()*+,-./:;?@[\\]^_`{|}~')


def xlnet_preprocess(text: str, lowercase: bool) -> str:
    """XLNet's `preprocess_text`: collapse whitespace, `` and '' to ", strip accents (NFKD, then
    drop combining marks), optionally lowercase."""
    text = " ".join(text.strip().split()).replace("``", '"').replace("''", '"')
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text.lower() if lowercase else text


class SentencePiece:
    """XLNet's SentencePiece tokenizer over a `.model` file (its released `spiece.model` or one
    trained by `train`), with XLNet's text preprocessing and digit-comma rule (`prepro_utils`)."""

    def __init__(self, model_file: Path, lowercase: bool):
        import sentencepiece

        self.processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        self.lowercase = lowercase
        self.symbols = [self.processor.id_to_piece(i) for i in range(self.processor.get_piece_size())]
        index = {s: i for i, s in enumerate(self.symbols)}
        missing = [s for s in SP_CONTROL + ["<unk>"] if s not in index]
        if missing:
            raise UserError(f"SentencePiece model {model_file} lacks {', '.join(missing)}; use XLNet's spiece.model "
                            f"or leave data.sentencepiece.model_file empty to train one")
        self.cls_id, self.sep_id, self.pad_id, self.mask_id, self.eod_id = (index[s] for s in SP_CONTROL)
        self.unk_id = index["<unk>"]

    def __len__(self) -> int:
        return len(self.symbols)

    @staticmethod
    def train(sentences, vocab_size: int, lowercase: bool, model_file: Path) -> None:
        """Learns a unigram model of `vocab_size` pieces from an iterable of sentences as XLNet's README
        does (character coverage 0.99995, its control and user-defined symbols); writes `model_file`."""
        import sentencepiece

        model = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=(xlnet_preprocess(s, lowercase) for s in sentences), model_writer=model,
            vocab_size=vocab_size, model_type="unigram", character_coverage=0.99995,
            control_symbols=SP_CONTROL, user_defined_symbols=SP_USER_DEFINED, num_threads=1,
            minloglevel=2, hard_vocab_limit=False)
        Path(model_file).write_bytes(model.getvalue())

    def pieces(self, text: str) -> list[str]:
        """XLNet's `encode_pieces`: a piece ending in a comma after a digit ("1990,") is split
        into the number's pieces and the comma."""
        out = []
        for piece in self.processor.encode(xlnet_preprocess(text, self.lowercase), out_type=str):
            if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
                split = self.processor.encode(piece[:-1].replace(SP_UNDERLINE, ""), out_type=str)
                if piece[0] != SP_UNDERLINE and split[0][0] == SP_UNDERLINE:
                    split = split[1:] if len(split[0]) == 1 else [split[0][1:]] + split[1:]
                out.extend(split + [","])
            else:
                out.append(piece)
        return out

    def encode(self, sentences: list[str]) -> list[np.ndarray]:
        """Piece ids of each sentence, without special tokens; a word the corpus marks unknown
        ([UNK], as `corpora` reads WikiText's <unk>) is <unk>."""
        encoded = []
        for sentence in sentences:
            ids = []
            for i, part in enumerate(sentence.split(WP_UNK)):
                ids.extend([self.unk_id] if i else [])
                ids.extend(self.processor.piece_to_id(p) for p in self.pieces(part) if part.strip())
            encoded.append(np.asarray(ids, np.int32))
        return encoded

    def word_starts(self) -> np.ndarray:
        """[vocab] True for pieces that begin a word (XLNet's `_is_start_piece`): "▁" or "<" first, or
        a punctuation piece."""
        return np.asarray([s.startswith((SP_UNDERLINE, "<")) or s in SP_PUNCTUATION for s in self.symbols])


class _Opaque:
    """Stands for any object of a pickle other than plain containers; its contents are dropped."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


class _WordListUnpickler(pickle.Unpickler):
    """Rebuilds only builtin and `collections` containers; every other class, and every tensor
    reference (none in a vocabulary), becomes an `_Opaque`."""

    def find_class(self, module, name):
        if module == "collections" and name in ("OrderedDict", "Counter", "defaultdict"):
            return getattr(collections, name)
        if module == "builtins" and name in ("list", "dict", "set", "tuple", "str", "int", "frozenset"):
            return getattr(builtins, name)
        return _Opaque

    def persistent_load(self, pid):
        return _Opaque()


def _unpickle(path: Path):
    """The object in a plain pickle, or in a `torch.save` file of either format: the zip archive
    (its `data.pkl`) or the legacy stream (magic number, protocol, system info, then the object)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            if name is None:
                raise UserError(f"{path} is a zip archive without data.pkl; is it a torch.save file?")
            return _WordListUnpickler(io.BytesIO(archive.read(name))).load()
    with open(path, "rb") as f:
        unpickler = _WordListUnpickler(f)
        first = unpickler.load()
        if isinstance(first, int):  # legacy torch.save: skip its protocol version and system info
            unpickler.load()
            unpickler.load()
            return unpickler.load()
        return first
