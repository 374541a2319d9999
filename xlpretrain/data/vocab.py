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
