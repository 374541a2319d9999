"""The ordered Transformer-XL stream: a split's token ids as B contiguous columns.

Column b is the b-th contiguous chunk of the split (the official `LMOrderedIterator`). Training step
s reads positions [k*T, k*T + T + 1) of every column, k = s mod steps_per_epoch, so row b of step
s+1 continues row b of step s and the memory carried between steps is the true left context. The
batch at step s is a pure function of (tokens, B, T, s): resuming at step s needs nothing else.
A host reads only its own columns.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from xlpretrain.errors import UserError

Batch = dict[str, np.ndarray]


class OrderedStream:
    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int,
                 host_index: int = 0, host_count: int = 1, name: str = "train"):
        if batch_size % host_count:
            raise UserError(f"batch size {batch_size} is not divisible by the {host_count} hosts; "
                            f"use a multiple of {host_count}")
        column_len = len(tokens) // batch_size
        if column_len < seq_len + 1:
            raise UserError(f"the {name} split ({len(tokens)} tokens) is too short for {batch_size} columns "
                            f"of {seq_len + 1} tokens; use a smaller batch size or segment length")
        per_host = batch_size // host_count
        columns = tokens[:batch_size * column_len].reshape(batch_size, column_len)
        self.columns = columns[host_index * per_host:(host_index + 1) * per_host]
        self.seq_len = seq_len
        # Every step predicts seq_len tokens; the last incomplete window of an epoch is dropped.
        self.steps_per_epoch = (column_len - 1) // seq_len

    def summary(self) -> str:
        return f"{self.columns.size:,} training tokens in {self.columns.shape[0]} columns"

    @staticmethod
    def batch_shapes(batch_size: int, seq_len: int) -> dict[str, tuple[tuple, type]]:
        """(shape, dtype) of each array of `batch_at`'s batch of `batch_size` rows."""
        return {"tokens": ((batch_size, seq_len + 1), np.int32), "mask": ((batch_size, seq_len), np.bool_),
                "reset": ((batch_size,), np.bool_)}

    def batch_at(self, step: int) -> Batch:
        """tokens [B_host, T+1]; mask [B_host, T] (all True); reset [B_host], True where a column
        starts over, so that memory from the end of the previous epoch is not used as context."""
        k = step % self.steps_per_epoch
        window = np.asarray(self.columns[:, k * self.seq_len:(k + 1) * self.seq_len + 1], np.int32)
        rows = window.shape[0]
        return {"tokens": window, "mask": np.ones((rows, self.seq_len), bool), "reset": np.full(rows, k == 0)}

    def evaluation_batches(self) -> Iterator[Batch]:
        """Every window of the whole split, in order: each column's tokens 1..end are predicted
        exactly once. The last window is padded to the full length, its padding masked out."""
        rows, column_len = self.columns.shape
        for start in range(0, column_len - 1, self.seq_len):
            window = np.asarray(self.columns[:, start:start + self.seq_len + 1], np.int32)
            n = window.shape[1] - 1
            tokens = np.zeros((rows, self.seq_len + 1), np.int32)
            tokens[:, :n + 1] = window
            mask = np.zeros((rows, self.seq_len), bool)
            mask[:, :n] = True
            yield {"tokens": tokens, "mask": mask, "reset": np.full(rows, start == 0)}

    def evaluation_steps(self) -> int:
        return -(-(self.columns.shape[1] - 1) // self.seq_len)
