"""Vocabularies: symbols <-> ids, built from a training split in frequency order.

Tokenization follows the official Transformer-XL reader (`utils/vocabulary.py`): a word-level line
is `line.split()` plus `<eos>`; the vocabulary is the special symbols first, then every training
symbol by decreasing count, ties in order of first appearance (`Counter.most_common`).
"""

from __future__ import annotations

import collections
import json
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

    def encode(self, symbols: list[str], where: str) -> np.ndarray:
        """Ids of `symbols`; symbols unknown to the vocabulary become `<unk>` if it has one."""
        unk = self.index.get(UNK)
        if unk is None:
            missing = [s for s in dict.fromkeys(symbols) if s not in self.index]
            if missing:
                raise UserError(
                    f"{where} has {len(missing)} symbol types not in the training vocabulary "
                    f"(e.g. {missing[0]!r}) and the vocabulary has no {UNK}; add them to the training "
                    f"data or map them to {UNK} there")
            return np.fromiter((self.index[s] for s in symbols), np.int32, len(symbols))
        return np.fromiter((self.index.get(s, unk) for s in symbols), np.int32, len(symbols))

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
