"""Population-batched MLP and ConvNet classifiers over an image dataset.

Subclasses say where the data comes from (``_load``) and the base sizes; this module writes
the model once, functionally over the population axis, and once more as its Keras twin.
"""

from __future__ import annotations

import abc

import keras
import numpy as np
import tensorflow as tf

from pipeline.tasks.base import (
    Metric,
    Task,
    TaskData,
    argmax_accuracy,
    dense,
    glorot,
    scaled,
    softmax_xent,
)

__all__ = ["MLPClassifier", "ConvClassifier"]


class _ImageClassifier(Task):
    # Validation cross-entropy, not accuracy: accuracy on a few hundred examples moves in
    # coarse steps and saturates (on digits, 295/297 by the second generation of a search,
    # then thousands of programs tie); the loss ranks finely. Accuracy is still reported.
    metric = Metric.NEG_VAL_LOSS
    image_shape: tuple[int, int, int]
    n_classes: int = 10

    @abc.abstractmethod
    def _load(self) -> TaskData:
        """Float32 images ``[N, H, W, C]`` in [0, 1] and int32 labels."""

    def data(self) -> TaskData:
        if "data" not in self._cache:
            self._cache["data"] = self._load()
        return self._cache["data"]

    def init_params(self) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng([self.seed, 0])
        return tuple(
            glorot(rng, s) if len(s) > 1 else np.zeros(s, np.float32) for s in self.param_shapes()
        )

    def loss(self, out, y):
        return softmax_xent(out, y)

    def accuracy(self, out, y):
        return argmax_accuracy(out, y)

    def _keras(self, layers: list) -> keras.Model:
        model = keras.Sequential([keras.Input(self.image_shape), *layers])
        model.set_weights(list(self.init_params()))
        return model


class MLPClassifier(_ImageClassifier):
    """Flattened image -> Dense(hidden, relu) -> Dense(classes); softmax cross-entropy."""

    base_hidden: int = 64

    @property
    def hidden(self) -> int:
        return scaled(self.base_hidden, self.scale)

    def param_shapes(self):
        d = int(np.prod(self.image_shape))
        h, c = self.hidden, self.n_classes
        return ((d, h), (h,), (h, c), (c,))

    def apply(self, params, x):
        w1, b1, w2, b2 = params
        x = tf.reshape(x, [tf.shape(x)[0], -1])
        h = tf.nn.relu(dense(x, w1, b1, shared_input=True))
        return dense(h, w2, b2, shared_input=False)

    def keras_model(self):
        return self._keras([
            keras.layers.Flatten(),
            keras.layers.Dense(self.hidden, activation="relu"),
            keras.layers.Dense(self.n_classes),
        ])


def _conv_same(h: tf.Tensor, w: tf.Tensor, b: tf.Tensor, shared_input: bool) -> tf.Tensor:
    """3x3 'same' convolution per member via patches: ``h`` is ``[B,H,W,C]`` or ``[P,B,H,W,C]``."""
    k = w.shape[1] * w.shape[2] * w.shape[3]
    wr = tf.reshape(w, [-1, k, w.shape[4]])
    if shared_input:
        patches = tf.image.extract_patches(h, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")
        out = tf.einsum("bhwk,pko->pbhwo", patches, wr)
    else:
        s = tf.shape(h)
        flat = tf.reshape(h, [s[0] * s[1], s[2], s[3], h.shape[4]])
        patches = tf.image.extract_patches(flat, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")
        patches = tf.reshape(patches, [s[0], s[1], s[2], s[3], k])
        out = tf.einsum("pbhwk,pko->pbhwo", patches, wr)
    return out + b[:, None, None, None, :]


def _pool2(h: tf.Tensor) -> tf.Tensor:
    """2x2 average pooling of ``[P, B, H, W, C]``."""
    s = tf.shape(h)
    c = h.shape[4]
    pooled = tf.nn.avg_pool2d(tf.reshape(h, [s[0] * s[1], s[2], s[3], c]), 2, 2, "VALID")
    ps = tf.shape(pooled)
    return tf.reshape(pooled, [s[0], s[1], ps[1], ps[2], c])


class ConvClassifier(_ImageClassifier):
    """Conv3x3(c1, relu) -> avgpool2 -> Conv3x3(c2, relu) -> avgpool2 -> Dense(classes)."""

    base_channels: tuple[int, int] = (8, 16)

    @property
    def channels(self) -> tuple[int, int]:
        return tuple(scaled(c, self.scale) for c in self.base_channels)

    def param_shapes(self):
        hgt, wid, cin = self.image_shape
        c1, c2 = self.channels
        flat = (hgt // 4) * (wid // 4) * c2
        return ((3, 3, cin, c1), (c1,), (3, 3, c1, c2), (c2,), (flat, self.n_classes),
                (self.n_classes,))

    def apply(self, params, x):
        k1, b1, k2, b2, w, b = params
        h = _pool2(tf.nn.relu(_conv_same(x, k1, b1, shared_input=True)))
        h = _pool2(tf.nn.relu(_conv_same(h, k2, b2, shared_input=False)))
        s = tf.shape(h)
        h = tf.reshape(h, [s[0], s[1], -1])
        return dense(h, w, b, shared_input=False)

    def keras_model(self):
        c1, c2 = self.channels
        return self._keras([
            keras.layers.Conv2D(c1, 3, padding="same", activation="relu"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Conv2D(c2, 3, padding="same", activation="relu"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(self.n_classes),
        ])


def split_train_val(x: np.ndarray, y: np.ndarray, n_val: int, data_seed: int) -> TaskData:
    """A seeded shuffle, then the last ``n_val`` examples are the validation split."""
    perm = np.random.default_rng([data_seed, 7]).permutation(len(x))
    tr, va = perm[:-n_val], perm[-n_val:]
    return TaskData(x[tr], y[tr], x[va], y[va])
