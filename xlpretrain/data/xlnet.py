"""XLNet's pretraining examples (zihangdai/xlnet `data_utils.py`): rows that continue each other, so
that the memory one batch leaves is the true left context of the next.

The split's sentences become one stream of pieces, with `<eod>` closing every document as a
sentence of its own; a flag flips at every sentence (the original's `sent_ids`). The stream is cut
into contiguous columns, one per row (with `bi_data`, half the rows and then the same columns
reversed). Example k of a row, at i = k * reuse_len, is

    column[i : i + reuse_len]  A  <sep>  B  <sep>  <cls>        segment ids 0 ... 0 | 1 ... 1 | 2

where A starts at i + reuse_len and ends at a random sentence boundary, and B is, with probability
1/2, the true continuation, else a random run of whole sentences of the same column; when A has no
boundary to end at before the row is full, it runs to the next one and B is random, as in the
original (`_split_a_and_b`). A and B are then trimmed from the right to fill the row. The reuse
part of example k + 1 is what follows the reuse part of example k.

Step s reads example s mod n_examples of every row, its random choices drawn from (seed, s, row),
so a batch is a pure function of the step; at example 0 every row starts over without memory.
Differences from the original: its examples are written once per pass; here each pass draws anew.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from xlpretrain.data.corpora import DocumentSplit
from xlpretrain.errors import UserError

Batch = dict[str, np.ndarray]


def sentence_stream(split: DocumentSplit, eod_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(pieces [n], sentence flag [n] bool flipping at every sentence), `<eod>` after every document."""
    tokens = np.asarray(split.tokens)
    sentence_starts = np.concatenate([[0], split.sentence_ends[:-1]])
    sentence_lengths = np.diff(np.concatenate([[0], split.sentence_ends]))
    document_ends = set(np.asarray(split.document_ends) - 1)  # the last sentence of each document
    pieces, flags, flag = [], [], False
    for index, (start, length) in enumerate(zip(sentence_starts, sentence_lengths)):
        parts = [tokens[start:start + length]]
        if index in document_ends:
            parts.append(np.asarray([eod_id], np.int32))
        for part in parts:
            if len(part):
                pieces.append(part)
                flags.append(np.full(len(part), flag))
                flag = not flag
    return np.concatenate(pieces).astype(np.int32), np.concatenate(flags)


class XLNetStream:
    def __init__(self, split: DocumentSplit, tokenizer, batch_size: int, seq_len: int, reuse_len: int, bi_data: bool,
                 seed: int, host_index: int = 0, host_count: int = 1, name: str = "train"):
        if batch_size % host_count:
            raise UserError(f"batch size {batch_size} is not divisible by the {host_count} hosts; "
                            f"use a multiple of {host_count}")
        if bi_data and batch_size % 2:
            raise UserError(f"bi_data reverses half of the rows; batch size {batch_size} must be even")
        if not 0 < reuse_len < seq_len - 3:
            raise UserError(f"reuse_len={reuse_len} must be in [1, seq_len - 4 = {seq_len - 4}]")
        self.seq_len, self.reuse_len, self.seed, self.batch_size = seq_len, reuse_len, seed, batch_size
        self.tokenizer = tokenizer
        pieces, flags = sentence_stream(split, tokenizer.eod_id)
        columns = batch_size // 2 if bi_data else batch_size
        length = len(pieces) // columns
        self.data = pieces[:columns * length].reshape(columns, length)
        flags = flags[:columns * length].reshape(columns, length)
        if bi_data:
            self.data = np.concatenate([self.data, self.data[:, ::-1]])
            flags = np.concatenate([flags, flags[:, ::-1]])
        # Sentence starts of each row: positions where the flag changes.
        self.boundaries = [np.flatnonzero(row[1:] != row[:-1]) + 1 for row in flags]
        self.n_examples = (length - seq_len) // reuse_len + 1 if length >= seq_len else 0
        if self.n_examples == 0:
            raise UserError(f"the {name} split ({len(pieces):,} pieces) is too short for one example of {seq_len} "
                            f"pieces in each of {columns} columns; use fewer rows or a shorter tgt_len")
        per_host = batch_size // host_count
        self.rows = np.arange(host_index * per_host, (host_index + 1) * per_host)
        self.reversed = np.arange(batch_size) >= columns if bi_data else np.zeros(batch_size, bool)
        self.word_start_table = tokenizer.word_starts()

    def summary(self) -> str:
        return f"{self.n_examples:,} examples of {self.seq_len} pieces in each of {self.batch_size} rows"

    @staticmethod
    def batch_shapes(batch_size: int, seq_len: int) -> dict[str, tuple[tuple, type]]:
        """(shape, dtype) of each array of `batch_at`'s batch of `batch_size` rows."""
        rows, flags = (batch_size, seq_len), (batch_size,)
        return {"tokens": (rows, np.int32), "token_types": (rows, np.int32), "word_starts": (rows, np.bool_),
                "functional": (rows, np.bool_), "reversed": (flags, np.bool_), "reset": (flags, np.bool_),
                "next_sentence": (flags, np.int32)}

    def _a_and_b(self, row: int, begin: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        """`_split_a_and_b`: (A, B, label) of total length seq_len - reuse_len - 3; label 1 when B
        is the true continuation."""
        data, boundaries, total = self.data[row], self.boundaries[row], self.seq_len - self.reuse_len - 3
        n = len(data)
        after = boundaries[boundaries > begin]
        cuts = after[after < begin + total]
        end = after[len(cuts)] if len(after) > len(cuts) else n  # the first boundary at or past the total
        if len(cuts) == 0 or rng.random() < 0.5:
            label = 0
            a_end = end if len(cuts) == 0 else int(rng.choice(cuts))
            b_len = max(1, total - (a_end - begin))
            b_begin = int(rng.integers(0, n - b_len))  # [0, n - 1 - b_len], as random.randint
            b_end = b_begin + b_len
            starts = np.concatenate([[0], boundaries])
            b_begin = int(starts[np.searchsorted(starts, b_begin, "right") - 1])  # back to its sentence's start
            later = boundaries[boundaries >= b_end]
            b_end = min(int(later[0]) if len(later) else n, n - 1)  # on to the end of its sentence
        else:
            label = 1
            a_end = int(rng.choice(cuts))
            b_begin, b_end = a_end, int(end)
        while (a_end - begin) + (b_end - b_begin) > total:
            if a_end - begin > b_end - b_begin:
                a_end -= 1
            else:
                b_end -= 1
        return data[begin:a_end], data[b_begin:b_end], label

    def _example(self, row: int, k: int, step: int):
        rng = np.random.default_rng([self.seed, step, row])
        begin = k * self.reuse_len
        a, b, label = self._a_and_b(row, begin + self.reuse_len, rng)
        t = self.tokenizer
        tokens = np.concatenate([self.data[row, begin:begin + self.reuse_len], a, [t.sep_id], b, [t.sep_id],
                                 [t.cls_id]]).astype(np.int32)
        types = np.concatenate([np.zeros(self.reuse_len + len(a) + 1), np.ones(len(b) + 1), [2]]).astype(np.int32)
        return tokens, types, label

    def batch_at(self, step: int) -> Batch:
        """tokens, token_types (0: reuse part, A, first <sep>; 1: B, second <sep>; 2: <cls>) [B_host,
        seq_len] int32; word_starts, functional (<sep>, <cls>) [B_host, seq_len] bool; reversed,
        reset [B_host] bool; next_sentence [B_host] int32 (1: B continues A; unused by the loss,
        as in XLNet)."""
        k = step % self.n_examples
        tokens, types, labels = zip(*(self._example(row, k, step) for row in self.rows))
        tokens = np.stack(tokens)
        return {"tokens": tokens, "token_types": np.stack(types), "word_starts": self.word_start_table[tokens],
                "functional": np.isin(tokens, [self.tokenizer.sep_id, self.tokenizer.cls_id]),
                "reversed": self.reversed[self.rows], "reset": np.full(len(self.rows), k == 0),
                "next_sentence": np.asarray(labels, np.int32)}

    def evaluation_batches(self) -> Iterator[Batch]:
        """Every example of every row once, in order, the memory carried from an empty start."""
        for step in range(self.n_examples):
            yield self.batch_at(step)

    def evaluation_steps(self) -> int:
        return self.n_examples
