"""Teacher regression (AutoML-Zero): labels from a fixed random 2-layer network."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from pipeline.tasks.base import Metric, Task, TaskData, dense, glorot, scaled

__all__ = ["TeacherRegression"]


@dataclass(frozen=True)
class TeacherRegression(Task):
    """Fit ``y = teacher(x)``, a fixed random tanh MLP; the student is ``in-hidden(relu)-1``.

    A good solution exists (the student is wide enough to approximate the teacher). The smoke
    proxy is the 1x task: MLP 16-32-1, batch 32, 200 steps. Metric: negative validation MSE.
    """

    in_dim: int = 16
    base_hidden: int = 32
    teacher_hidden: int = 8
    base_train: int = 1024
    n_val: int = 256
    base_steps: int = 200
    batch_size: int = 32
    learning_rate: float = 0.02  # AdamW's tuned rate on this proxy (benchmarks/proxy_validity.py)
    name: str = "teacher"
    metric = Metric.NEG_VAL_LOSS

    @property
    def hidden(self) -> int:
        return scaled(self.base_hidden, self.scale)

    def data(self) -> TaskData:
        if "data" not in self._cache:
            rng = np.random.default_rng([self.data_seed, 11])
            t1 = rng.normal(size=(self.in_dim, self.teacher_hidden)) / np.sqrt(self.in_dim)
            t2 = rng.normal(size=(self.teacher_hidden, 1)) / np.sqrt(self.teacher_hidden)
            n = scaled(self.base_train, self.scale) + self.n_val
            x = rng.normal(size=(n, self.in_dim))
            y = np.tanh(x @ t1) @ t2
            x, y = x.astype(np.float32), y.astype(np.float32)
            k = n - self.n_val
            self._cache["data"] = TaskData(x[:k], y[:k], x[k:], y[k:])
        return self._cache["data"]

    def param_shapes(self):
        return ((self.in_dim, self.hidden), (self.hidden,), (self.hidden, 1), (1,))

    def init_params(self):
        rng = np.random.default_rng([self.seed, 0])
        w1 = glorot(rng, (self.in_dim, self.hidden))
        w2 = glorot(rng, (self.hidden, 1))
        return (w1, np.zeros(self.hidden, np.float32), w2, np.zeros(1, np.float32))

    def apply(self, params, x):
        w1, b1, w2, b2 = params
        h = tf.nn.relu(dense(x, w1, b1, shared_input=True))
        return dense(h, w2, b2, shared_input=False)

    def loss(self, out, y):
        return tf.reduce_mean(tf.square(out - y[None]), axis=[1, 2])

    def keras_model(self):
        model = keras.Sequential([
            keras.Input((self.in_dim,)),
            keras.layers.Dense(self.hidden, activation="relu"),
            keras.layers.Dense(1),
        ])
        model.set_weights(list(self.init_params()))
        return model
