"""A character-level language model on text that ships with Python (``pydoc_data.topics``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from pipeline.tasks.base import Metric, Task, TaskData, glorot, scaled, softmax_xent

__all__ = ["CharLM", "corpus"]

# Printable ASCII and newline; anything else reads as '?'.
VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))
_INDEX = {c: i for i, c in enumerate(VOCAB)}


def corpus() -> str:
    """The standard library's pydoc topic texts, in sorted-key order (~465k characters)."""
    from pydoc_data.topics import topics

    return "".join(topics[k] for k in sorted(topics))


def encode_text(text: str) -> np.ndarray:
    unknown = _INDEX["?"]
    return np.array([_INDEX.get(c, unknown) for c in text], dtype=np.int32)


@dataclass(frozen=True)
class CharLM(Task):
    """Next-character prediction with one causal self-attention layer.

    ``logits = (e + attn(e)) @ W_out + b`` with ``e`` = token + position embeddings, width
    ``d_model``, context ``context``. Windows come from the first 90% of the corpus for
    training and the last 10% for validation. Metric: negative validation cross-entropy.
    """

    context: int = 32
    base_d_model: int = 16
    base_train: int = 2048
    n_val: int = 256
    base_steps: int = 200
    batch_size: int = 32
    learning_rate: float = 0.04  # AdamW's tuned rate on this proxy (benchmarks/proxy_validity.py)
    name: str = "char_lm"
    metric = Metric.NEG_VAL_LOSS

    @property
    def d_model(self) -> int:
        return scaled(self.base_d_model, self.scale)

    def data(self) -> TaskData:
        if "data" not in self._cache:
            tokens = encode_text(corpus())
            cut = int(len(tokens) * 0.9)
            rng = np.random.default_rng([self.data_seed, 13])
            span = self.context + 1

            tr_starts = rng.integers(0, cut - span, size=scaled(self.base_train, self.scale))
            va_starts = rng.integers(cut, len(tokens) - span, size=self.n_val)
            self._cache["starts"] = (tr_starts, va_starts, cut)
            tr = np.stack([tokens[s : s + span] for s in tr_starts])
            va = np.stack([tokens[s : s + span] for s in va_starts])
            self._cache["data"] = TaskData(tr[:, :-1], tr[:, 1:], va[:, :-1], va[:, 1:])
        return self._cache["data"]

    def window_starts(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Corpus offsets of the train and validation windows, and the split point."""
        self.data()
        return self._cache["starts"]

    def param_shapes(self):
        v, d, t = len(VOCAB), self.d_model, self.context
        return ((v, d), (t, d), (d, d), (d, d), (d, d), (d, v), (v,))

    def init_params(self):
        rng = np.random.default_rng([self.seed, 0])
        shapes = self.param_shapes()
        out = [(0.1 * rng.normal(size=s)).astype(np.float32) for s in shapes[:2]]
        out += [glorot(rng, s) for s in shapes[2:6]]
        return (*out, np.zeros(shapes[6], np.float32))

    def apply(self, params, x):
        emb, pos, wq, wk, wv, wo, bo = params
        onehot = tf.one_hot(x, len(VOCAB), dtype=tf.float32)  # [B, T, V]
        e = tf.einsum("btv,pvd->pbtd", onehot, emb) + pos[:, None]
        q = tf.einsum("pbtd,pde->pbte", e, wq)
        k = tf.einsum("pbtd,pde->pbte", e, wk)
        v = tf.einsum("pbtd,pde->pbte", e, wv)
        scores = tf.einsum("pbte,pbse->pbts", q, k) / np.sqrt(self.d_model).astype(np.float32)
        t = self.context
        causal = tf.constant(np.tril(np.ones((t, t), bool)))
        scores = tf.where(causal, scores, tf.constant(-1e9, tf.float32))
        h = e + tf.einsum("pbts,pbse->pbte", tf.nn.softmax(scores, axis=-1), v)
        return tf.einsum("pbtd,pdv->pbtv", h, wo) + bo[:, None, None, :]

    def loss(self, out, y):
        return softmax_xent(out, y)
