"""Fixed-length examples for the encoder objectives: `[CLS] A [SEP] B [SEP]` from documents.

`build_examples` packs consecutive sentences of a document as BERT's `create_pretraining_data.py`
does: sentences are gathered until they fill a target length (max_seq_len - 3, or with probability
`short_seq_prob` a shorter random one), then split at a random sentence boundary into segment A and
segment B. With `next_sentence`, half of the B segments (and all of them when only one sentence was
gathered) come from a random other document and are labelled 1, the unused sentences going back for
the next example (BERT's next-sentence prediction); without it B is always the true continuation
(RoBERTa, ELECTRA), and may be empty. Pairs too long are trimmed one token at a time from the front
or back (at random) of the longer segment. The packing is drawn once, from `seed`.

`ExampleStream.batch_at(step)` reads the examples in an order shuffled afresh every epoch, a pure
function of (seed, epoch): the batch of step s is the same in every run, so a run resumes by its
step number. A host reads only its own rows of each batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from xlpretrain.data.corpora import DocumentSplit
from xlpretrain.data.vocab import WordPiece
from xlpretrain.errors import UserError

Batch = dict[str, np.ndarray]


def _sentences(split: DocumentSplit, starts: np.ndarray, first: int, last: int) -> list[np.ndarray]:
    """Sentences first..last-1 of `split`; `starts` is [0, *split.sentence_ends]."""
    return [np.asarray(split.tokens[starts[i]:starts[i + 1]]) for i in range(first, last)]


def _trim(a: list[int], b: list[int], max_tokens: int, rng: np.random.Generator) -> None:
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        del longer[0 if rng.random() < 0.5 else -1]


def build_examples(split: DocumentSplit, tokenizer: WordPiece, max_seq_len: int, next_sentence: bool,
                   short_seq_prob: float, seed: int) -> dict[str, np.ndarray]:
    """tokens, token_types [examples, max_seq_len] (padded with [PAD]) and next_sentence [examples]."""
    rng = np.random.default_rng(seed)
    max_tokens = max_seq_len - 3
    doc_starts = np.concatenate([[0], split.document_ends])
    sentence_starts = np.concatenate([[0], split.sentence_ends])
    n_docs = len(split.document_ends)
    tokens, types, labels = [], [], []
    for d in range(n_docs):
        document = _sentences(split, sentence_starts, doc_starts[d], doc_starts[d + 1])
        target = int(rng.integers(2, max_tokens + 1)) if rng.random() < short_seq_prob else max_tokens
        chunk, length, i = [], 0, 0
        while i < len(document):
            chunk.append(document[i])
            length += len(document[i])
            if i == len(document) - 1 or length >= target:
                a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
                a = [int(t) for s in chunk[:a_end] for t in s]
                is_random = next_sentence and n_docs > 1 and (len(chunk) == 1 or rng.random() < 0.5)
                if is_random:
                    other = int(rng.integers(0, n_docs - 1))
                    other += other >= d
                    pool = _sentences(split, sentence_starts, doc_starts[other], doc_starts[other + 1])
                    b = []
                    for sentence in pool[int(rng.integers(0, len(pool))):]:
                        b.extend(int(t) for t in sentence)
                        if len(b) >= target - len(a):
                            break
                    i -= len(chunk) - a_end  # the unused sentences start the next example
                else:
                    b = [int(t) for s in chunk[a_end:] for t in s]
                _trim(a, b, max_tokens, rng)
                ids = [tokenizer.cls_id] + a + [tokenizer.sep_id] + (b + [tokenizer.sep_id] if b else [])
                row = np.full(max_seq_len, tokenizer.pad_id, np.int32)
                row[:len(ids)] = ids
                row_types = np.zeros(max_seq_len, np.int32)
                row_types[len(a) + 2:len(ids)] = 1
                tokens.append(row), types.append(row_types), labels.append(int(is_random))
                chunk, length = [], 0
                target = int(rng.integers(2, max_tokens + 1)) if rng.random() < short_seq_prob else max_tokens
            i += 1
    return {"tokens": np.stack(tokens), "token_types": np.stack(types), "next_sentence": np.asarray(labels, np.int32)}


class ExampleStream:
    """Batches of examples. Row r of step s is example order(epoch)[i], i = (s*B + r) mod N,
    epoch = (s*B + r) div N, order(epoch) a permutation drawn from (seed, epoch)."""

    def __init__(self, examples: dict[str, np.ndarray], tokenizer: WordPiece, batch_size: int, seed: int,
                 host_index: int = 0, host_count: int = 1, next_sentence: bool = False, name: str = "train"):
        if batch_size % host_count:
            raise UserError(f"batch size {batch_size} is not divisible by the {host_count} hosts; "
                            f"use a multiple of {host_count}")
        self.examples, self.next_sentence, self.seed = examples, next_sentence, seed
        self.n = len(examples["tokens"])
        if self.n == 0:
            raise UserError(f"the {name} split gave no examples; check data.documents and the files")
        self.batch_size, self.per_host = batch_size, batch_size // host_count
        self.rows = np.arange(host_index * self.per_host, (host_index + 1) * self.per_host)
        self.pad_id = tokenizer.pad_id
        self.specials = np.asarray([tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id])
        self.word_start_table = tokenizer.word_starts()
        self._orders: dict[int, np.ndarray] = {}

    def summary(self) -> str:
        return f"{self.n:,} training examples of {self.examples['tokens'].shape[1]} tokens"

    @staticmethod
    def batch_shapes(batch_size: int, seq_len: int, next_sentence: bool) -> dict[str, tuple[tuple, type]]:
        """(shape, dtype) of each array of `batch_at`'s batch of `batch_size` rows."""
        rows = (batch_size, seq_len)
        shapes = {"tokens": (rows, np.int32), "token_types": (rows, np.int32), "valid": (rows, np.bool_),
                  "maskable": (rows, np.bool_), "word_starts": (rows, np.bool_)}
        return shapes | ({"next_sentence": ((batch_size,), np.int32)} if next_sentence else {})

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._orders[epoch]

    def _batch(self, indices: np.ndarray, real: np.ndarray) -> Batch:
        """The examples at `indices`; rows where `real` is False are all padding."""
        tokens = np.where(real[:, None], self.examples["tokens"][indices], self.pad_id)
        batch = {"tokens": tokens, "token_types": self.examples["token_types"][indices],
                 "valid": tokens != self.pad_id, "maskable": ~np.isin(tokens, self.specials),
                 "word_starts": self.word_start_table[tokens]}
        if self.next_sentence:
            batch["next_sentence"] = self.examples["next_sentence"][indices]
        return batch

    def batch_at(self, step: int) -> Batch:
        """tokens, token_types [B_host, L] int32; valid, maskable, word_starts [B_host, L] bool;
        next_sentence [B_host] int32 with next-sentence examples."""
        position = step * self.batch_size + self.rows
        epochs, within = np.divmod(position, self.n)
        indices = np.asarray([self._order(e)[i] for e, i in zip(epochs, within)])
        return self._batch(indices, np.ones(len(indices), bool))

    def evaluation_batches(self) -> Iterator[Batch]:
        """Every example once, in order; the last batch is filled with padding rows, which no
        loss or metric counts."""
        for start in range(0, self.n, self.batch_size):
            position = start + self.rows
            yield self._batch(np.minimum(position, self.n - 1), position < self.n)

    def evaluation_steps(self) -> int:
        return -(-self.n // self.batch_size)
