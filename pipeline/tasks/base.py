"""The task contract: data, a population-batched functional model, a loss and a metric.

A task's model is written functionally over a *population* axis: ``apply(params, x)`` takes
one tensor per variable with a leading population dimension ``[P, *shape]`` and a batch
``x`` shared by every member, and returns ``[P, B, ...]``. Every member starts from the same
``init_params()`` and sees the same data order (``batch_indices()``), so members differ only
in their optimizer. ``keras_model()`` builds the same network in Keras (for the equivalence
test and for users).
"""

from __future__ import annotations

import abc
import enum
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import tensorflow as tf

__all__ = ["Metric", "Task", "TaskData", "glorot", "scaled"]


class Metric(enum.Enum):
    """What a task's fitness is; higher is better for both."""

    NEG_VAL_LOSS = "neg_val_loss"
    VAL_ACCURACY = "val_accuracy"


@dataclass(frozen=True)
class TaskData:
    """Train and validation arrays; the validation split is never trained on."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def scaled(base: int, scale: float) -> int:
    """``base * sqrt(scale)``, rounded: width, steps and examples each grow by sqrt(scale),
    so a task at ``scale=10`` costs roughly 10x (width x steps) the 1x task."""
    if scale <= 0:
        raise ValueError(f"Argument `scale` must be > 0. Received: scale={scale}")
    return max(1, round(base * math.sqrt(scale)))


def glorot(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Glorot-uniform initial values (Keras' default for kernels), float32."""
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


@dataclass(frozen=True)
class Task(abc.ABC):
    """A training problem the evaluator runs a population of optimizers on.

    Tasks are frozen dataclasses. The fields every task has: ``scale`` (grows width, steps
    and examples by ``sqrt(scale)`` each), ``seed`` (initialization and data order),
    ``data_seed`` (the dataset, split and teacher: fixed across searches), ``base_steps``
    (training steps at 1x), ``batch_size`` and ``learning_rate`` (the ``lr`` programs see).
    A subclass sets its own defaults and ``metric``.
    """

    scale: float = 1.0
    seed: int = 0
    data_seed: int = 0
    base_steps: int = 200
    batch_size: int = 32
    learning_rate: float = 0.01
    name: str = "task"
    metric: ClassVar[Metric]
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @property
    def steps(self) -> int:
        """Training steps: ``base_steps`` grown by ``sqrt(scale)``."""
        return scaled(self.base_steps, self.scale)

    @abc.abstractmethod
    def data(self) -> TaskData:
        """The dataset (cached on the instance; deterministic in ``data_seed``)."""

    @abc.abstractmethod
    def param_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shapes of the model's variables, in ``keras_model().trainable_weights`` order."""

    @abc.abstractmethod
    def init_params(self) -> tuple[np.ndarray, ...]:
        """Initial values (deterministic in ``seed``), one array per variable."""

    @abc.abstractmethod
    def apply(self, params: list[tf.Tensor], x: tf.Tensor) -> tf.Tensor:
        """The forward pass: ``params[i]`` is ``[P, *shape_i]``, ``x`` is ``[B, ...]``."""

    @abc.abstractmethod
    def loss(self, out: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """Mean loss per population member, ``[P]``."""

    def accuracy(self, out: tf.Tensor, y: tf.Tensor) -> tf.Tensor | None:
        """Accuracy per member ``[P]``, or None where it does not apply."""
        return None

    def keras_model(self):
        """The same network as a Keras model, initialized with ``init_params()``."""
        raise NotImplementedError(f"task {self.name!r} has no Keras twin")

    def batch_indices(self) -> np.ndarray:
        """``[steps, batch_size]`` train-example indices: the data order, seeded by ``seed``.

        Epochs are shuffled permutations; every member of a population sees this order.
        """
        n = len(self.data().x_train)
        rng = np.random.default_rng([self.seed, 1])
        need = self.steps * self.batch_size
        order = np.concatenate([rng.permutation(n) for _ in range(-(-need // n))])
        return order[:need].reshape(self.steps, self.batch_size).astype(np.int32)

    @property
    def n_params(self) -> int:
        return int(sum(np.prod(s) for s in self.param_shapes()))


def softmax_xent(out: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Mean sparse softmax cross-entropy over all but the population axis: ``[P]``."""
    labels = tf.broadcast_to(tf.cast(y, tf.int32), tf.shape(out)[:-1])
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=out)
    return tf.reduce_mean(tf.reshape(xent, [tf.shape(out)[0], -1]), axis=1)


def argmax_accuracy(out: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    pred = tf.argmax(out, axis=-1, output_type=tf.int32)
    hit = tf.cast(tf.equal(pred, tf.cast(y, tf.int32)[None]), tf.float32)
    return tf.reduce_mean(tf.reshape(hit, [tf.shape(out)[0], -1]), axis=1)


def dense(h: tf.Tensor, w: tf.Tensor, b: tf.Tensor, shared_input: bool) -> tf.Tensor:
    """``h @ w + b`` per member: ``h`` is ``[B, i]`` (shared) or ``[P, B, i]``."""
    eq = "bi,pij->pbj" if shared_input else "pbi,pij->pbj"
    return tf.einsum(eq, h, w) + b[:, None, :]
