"""The MNIST and CIFAR-10 tasks, read from dataset files on disk: never downloads, never unpickles.

Looked for, in order, under ``cache_dir`` (argument, else ``$LIONFORGE_DATA_DIR``, else
``~/.keras/datasets``):

* MNIST: ``mnist.npz`` (the ``keras.datasets.mnist`` file: ``x_train``, ``y_train``,
  ``x_test``, ``y_test``).
* CIFAR-10: ``cifar10.npz`` (same four keys, images ``[N, 32, 32, 3]``) or the official
  binary version ``cifar-10-batches-bin/`` (``data_batch_1..5.bin``, ``test_batch.bin``;
  records of 1 label byte + 3072 image bytes, channel-major). The pickled Python version is
  not read (pickle runs code).

A missing file raises :class:`DatasetNotFound` at once, naming the paths it tried.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.tasks.base import TaskData, scaled
from pipeline.tasks.models import ConvClassifier, MLPClassifier

__all__ = ["DatasetNotFound", "data_dir", "load_mnist", "load_cifar10", "MnistMLP", "Cifar10Conv"]

CIFAR_RECORD = 1 + 32 * 32 * 3


class DatasetNotFound(FileNotFoundError):
    """A dataset is not in the local cache (lionforge never downloads during a search)."""


def data_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache: the argument, else ``$LIONFORGE_DATA_DIR``, else ``~/.keras/datasets``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("LIONFORGE_DATA_DIR")
    return Path(env) if env else Path.home() / ".keras" / "datasets"


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
        if missing:
            raise ValueError(f"{path} lacks arrays {sorted(missing)}")
        return {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}


def load_mnist(cache_dir=None) -> dict[str, np.ndarray]:
    """MNIST as uint8 images ``[N, 28, 28]`` and labels, from ``<cache>/mnist.npz``."""
    path = data_dir(cache_dir) / "mnist.npz"
    if not path.is_file():
        raise DatasetNotFound(
            f"MNIST not found: expected {path} (the keras.datasets.mnist file). Copy it there "
            "or set LIONFORGE_DATA_DIR; lionforge does not download data."
        )
    return _npz(path)


def _cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % CIFAR_RECORD:
        raise ValueError(f"{path}: size {raw.size} is not a multiple of {CIFAR_RECORD}")
    rec = raw.reshape(-1, CIFAR_RECORD)
    images = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, rec[:, 0].astype(np.int64)


def load_cifar10(cache_dir=None) -> dict[str, np.ndarray]:
    """CIFAR-10 as uint8 images ``[N, 32, 32, 3]`` and labels (see the module doc for files)."""
    root = data_dir(cache_dir)
    npz = root / "cifar10.npz"
    if npz.is_file():
        return _npz(npz)
    bindir = root / "cifar-10-batches-bin"
    train_files = [bindir / f"data_batch_{i}.bin" for i in range(1, 6)]
    test_file = bindir / "test_batch.bin"
    if all(p.is_file() for p in [*train_files, test_file]):
        parts = [_cifar_bin(p) for p in train_files]
        x_test, y_test = _cifar_bin(test_file)
        return {
            "x_train": np.concatenate([p[0] for p in parts]),
            "y_train": np.concatenate([p[1] for p in parts]),
            "x_test": x_test,
            "y_test": y_test,
        }
    hint = " (found the pickled cifar-10-batches-py, which is not read)" if (
        root / "cifar-10-batches-py").exists() else ""
    raise DatasetNotFound(
        f"CIFAR-10 not found: expected {npz} or {bindir}/data_batch_1..5.bin and "
        f"test_batch.bin{hint}. Set LIONFORGE_DATA_DIR; lionforge does not download data."
    )


def _subset(arrays: dict[str, np.ndarray], n_train: int, n_val: int, data_seed: int) -> TaskData:
    """Validation = ``n_val`` held-out training images (the test split stays untouched)."""
    x = arrays["x_train"]
    y = arrays["y_train"].astype(np.int32).reshape(-1)
    if x.ndim == 3:
        x = x[..., None]
    perm = np.random.default_rng([data_seed, 7]).permutation(len(x))
    if n_val >= len(x):
        raise ValueError(f"n_val={n_val} leaves no training data ({len(x)} images)")
    va, tr = perm[:n_val], perm[n_val:][:n_train]
    f = np.float32(1.0 / 255.0)
    return TaskData(x[tr].astype(np.float32) * f, y[tr], x[va].astype(np.float32) * f, y[va])


@dataclass(frozen=True)
class MnistMLP(MLPClassifier):
    """MNIST with an MLP 784-128-10 on a training subset.
    Metric: negative validation cross-entropy."""

    cache_dir: str | None = None
    base_hidden: int = 128
    base_train: int = 10000
    n_val: int = 2000
    base_steps: int = 300
    batch_size: int = 64
    learning_rate: float = 0.01
    name: str = "mnist_mlp"
    image_shape = (28, 28, 1)

    def _load(self) -> TaskData:
        arrays = load_mnist(self.cache_dir)
        return _subset(arrays, scaled(self.base_train, self.scale), self.n_val, self.data_seed)


@dataclass(frozen=True)
class Cifar10Conv(ConvClassifier):
    """CIFAR-10 with the small ConvNet (16 and 32 channels at 1x).
    Metric: negative validation cross-entropy."""

    cache_dir: str | None = None
    base_channels: tuple[int, int] = (16, 32)
    base_train: int = 10000
    n_val: int = 2000
    base_steps: int = 300
    batch_size: int = 64
    learning_rate: float = 0.01
    name: str = "cifar10_conv"
    image_shape = (32, 32, 3)

    def _load(self) -> TaskData:
        arrays = load_cifar10(self.cache_dir)
        return _subset(arrays, scaled(self.base_train, self.scale), self.n_val, self.data_seed)
