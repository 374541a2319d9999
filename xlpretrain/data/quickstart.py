"""The built-in quickstart corpus: a stochastic language whose entropy rate is known exactly.

The language is a sequence of documents, each long enough (`mean_doc_len` tokens on average) to
span several training segments. A document

- opens with a topic marker `<topicK>` (K uniform over `n_topics`); the topic shifts the
  probabilities of every word in the document;
- has a hidden cast of `cast_size` names drawn without replacement from `n_names`; every name in
  the document is one of its cast, uniformly;
- continues token by token: after any token but a marker, the document ends with probability
  p_end = 1/mean_doc_len (the next token opens the next document); otherwise the next token is a
  word or a name, with class probabilities (1 - topic_weight) * B[last, .] + topic_weight * U_K[.],
  where B is a bigram table over {words, NAME} shared by all topics (names share one row) and U_K
  a table over words per topic, all drawn from sparse Dirichlet distributions by `seed`.

A reader who has seen the whole document so far knows its topic and the m names of the cast seen
so far, and nothing more: the next name is a seen one with probability m/cast_size. A model that
remembers further back than one segment (the marker, the words that reveal the topic, the names
already used) predicts better, which is what Transformer-XL's memory is for.

The entropy rate is exact by the renewal-reward theorem: documents are independent, so it is the
expected total entropy of the next-token distribution over a document's states (topic, last
token class, names seen) divided by the expected document length (`entropy_rate_bits`). A test
checks it against a Monte-Carlo estimate over sampled text.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np


def _entropy_bits(probs: np.ndarray) -> np.ndarray:
    """Entropy in bits over the last axis; zero-probability entries contribute nothing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(probs > 0, probs * np.log2(probs), 0.0).sum(-1)


@dataclasses.dataclass(frozen=True)
class QuickstartLanguage:
    seed: int = 0
    n_topics: int = 16
    n_words: int = 128
    n_names: int = 64
    cast_size: int = 4
    mean_doc_len: int = 256
    topic_weight: float = 0.4
    bigram_concentration: float = 0.1
    topic_concentration: float = 1.0
    name_rate: float = 0.2  # Dirichlet mass of the NAME class in each bigram row

    # Token ids: markers [0, n_topics), words [n_topics, n_topics + n_words), names after that.
    @property
    def vocab_size(self) -> int:
        return self.n_topics + self.n_words + self.n_names

    @property
    def symbols(self) -> list[str]:
        return ([f"<topic{k}>" for k in range(self.n_topics)] + [f"w{i}" for i in range(self.n_words)]
                + [f"Name{i}" for i in range(self.n_names)])

    @functools.cached_property
    def class_probs(self) -> np.ndarray:
        """[n_topics, n_words + 2, n_words + 1]: P(next class | topic, last class) when the document
        goes on. Last classes: words, NAME, MARKER; next classes: words, NAME."""
        rng = np.random.default_rng([self.seed, 0x5EED])
        W = self.n_words
        concentration = np.full(W + 1, self.bigram_concentration)
        concentration[W] = self.name_rate * W * self.bigram_concentration / (1 - self.name_rate)
        bigram = rng.dirichlet(concentration, size=W + 2)
        topics = np.zeros((self.n_topics, W + 1))
        topics[:, :W] = rng.dirichlet(np.full(W, self.topic_concentration), size=self.n_topics)
        return (1 - self.topic_weight) * bigram[None] + self.topic_weight * topics[:, None, :]

    def name_probs(self, seen: int) -> tuple[float, float]:
        """P(a given seen name), P(a given unseen name) for the next name, with `seen` cast names seen."""
        unseen_mass = (self.cast_size - seen) / self.cast_size
        per_unseen = unseen_mass / (self.n_names - seen) if unseen_mass else 0.0
        return 1.0 / self.cast_size, per_unseen

    @functools.cached_property
    def _document_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Expected visits per document to each state (topic, last class, names seen) and the
        entropy of the next token in that state: two [n_topics, n_words + 2, cast_size + 1] arrays."""
        K, W, C = self.n_topics, self.n_words, self.cast_size
        NAME, MARKER = W, W + 1
        p_end = 1.0 / self.mean_doc_len
        go_on = np.full(W + 2, 1.0 - p_end)
        go_on[MARKER] = 1.0  # a document has at least one word or name
        classes = self.class_probs * go_on[None, :, None]           # [K, last, next class]

        name_entropy = np.zeros(C + 1)  # entropy of the name's identity, given m names seen
        for m in range(C + 1):
            seen, unseen = self.name_probs(m)
            name_entropy[m] = _entropy_bits(np.array([seen] * m + [unseen] * (self.n_names - m)))
        end = np.zeros(W + 2)
        end[:W + 1] = p_end
        ends = np.zeros((W + 2, K))
        ends[:] = end[:, None] / K
        class_entropy = _entropy_bits(np.concatenate([np.broadcast_to(ends, (K, W + 2, K)), classes], -1))
        entropy = class_entropy[..., None] + classes[..., NAME, None] * name_entropy[None, None, :]

        visits = np.zeros((K, W + 2, C + 1))
        n_states = (W + 2) * (C + 1)
        for k in range(K):
            # Q[s, s']: probability of moving from state s to s' without ending the document.
            q = np.zeros((W + 2, C + 1, W + 2, C + 1))
            for m in range(C + 1):
                q[:, m, :W, m] = classes[k, :, :W]
                new_name = (C - m) / C
                q[:, m, NAME, m] += classes[k, :, NAME] * (1 - new_name)
                if m < C:
                    q[:, m, NAME, m + 1] += classes[k, :, NAME] * new_name
            start = np.zeros(n_states)
            start[MARKER * (C + 1)] = 1.0  # (MARKER, 0 names seen)
            q = q.reshape(n_states, n_states)
            visits[k] = np.linalg.solve((np.eye(n_states) - q).T, start).reshape(W + 2, C + 1) / K
        return visits, entropy

    @functools.cached_property
    def entropy_rate_bits(self) -> float:
        """Exact entropy rate, bits per token."""
        visits, entropy = self._document_statistics
        return float((visits * entropy).sum() / visits.sum())

    def sample(self, n_tokens: int, seed: int, n_chains: int = 64) -> np.ndarray:
        """`n_tokens` token ids: `n_chains` independent runs of the language, each starting on a
        document's marker, concatenated. Vectorized over the chains."""
        rng = np.random.default_rng([self.seed, seed])
        K, W, C = self.n_topics, self.n_words, self.cast_size
        NAME, MARKER = W, W + 1
        length = -(-n_tokens // n_chains)
        p_end = 1.0 / self.mean_doc_len
        cdf = np.cumsum(self.class_probs, axis=-1)
        cdf[..., -1] = 1.0
        out = np.empty((n_chains, length), np.int32)
        chains = np.arange(n_chains)

        def new_cast(n):
            return np.argsort(rng.random((n, self.n_names)), axis=1)[:, :C]

        topic = rng.integers(0, K, size=n_chains)
        cast = new_cast(n_chains)
        last = np.full(n_chains, MARKER)
        out[:, 0] = topic
        for t in range(1, length):
            u = rng.random((3, n_chains))
            ends = (last != MARKER) & (u[0] < p_end)
            cls = (cdf[topic, last] < u[1][:, None]).sum(-1)
            name = cast[chains, (u[2] * C).astype(int)]
            token = np.where(cls == NAME, K + W + name, K + cls)
            n_ends = int(ends.sum())
            if n_ends:
                topic[ends] = rng.integers(0, K, size=n_ends)
                cast[ends] = new_cast(n_ends)
                token[ends] = topic[ends]
            last = np.where(ends, MARKER, cls)
            out[:, t] = token
        return out.reshape(-1)[:n_tokens]

    def log2_probs(self, tokens: np.ndarray) -> np.ndarray:
        """log2 P(tokens[t] | tokens[:t]) under the language for t >= 1, when tokens[0] is a marker."""
        K, W = self.n_topics, self.n_words
        NAME, MARKER = W, W + 1
        p_end = 1.0 / self.mean_doc_len
        out = np.empty(len(tokens) - 1)
        topic, last, seen = int(tokens[0]), MARKER, set()
        for t, token in enumerate(tokens[1:].tolist()):
            go_on = 1.0 if last == MARKER else 1.0 - p_end
            if token < K:
                p, topic, last, seen = p_end / K, token, MARKER, set()
            elif token < K + W:
                p = go_on * self.class_probs[topic, last, token - K]
                last = token - K
            else:
                in_seen, per_unseen = self.name_probs(len(seen))
                p = go_on * self.class_probs[topic, last, NAME] * (in_seen if token in seen else per_unseen)
                seen.add(token)
                last = NAME
            out[t] = np.log2(p)
        return out
