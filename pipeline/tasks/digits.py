"""scikit-learn's bundled 8x8 digits (1797 images, no download): an MLP and a ConvNet."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.tasks.base import TaskData
from pipeline.tasks.models import ConvClassifier, MLPClassifier, split_train_val

__all__ = ["DigitsMLP", "DigitsConv"]

N_VAL = 297  # 1500 train, 297 validation


def load_digits_split(data_seed: int) -> TaskData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]
    return split_train_val(x, bunch.target.astype(np.int32), N_VAL, data_seed)


@dataclass(frozen=True)
class DigitsMLP(MLPClassifier):
    """Digits with an MLP 64-hidden-10 (hidden = 64 at 1x).
    Metric: negative validation cross-entropy."""

    base_hidden: int = 64
    base_steps: int = 300
    batch_size: int = 32
    learning_rate: float = 0.02  # AdamW's tuned rate on this proxy (benchmarks/proxy_validity.py)
    name: str = "digits_mlp"
    image_shape = (8, 8, 1)

    def _load(self) -> TaskData:
        return load_digits_split(self.data_seed)


@dataclass(frozen=True)
class DigitsConv(ConvClassifier):
    """Digits with a small ConvNet (8 and 16 channels at 1x).
    Metric: negative validation cross-entropy."""

    base_channels: tuple[int, int] = (8, 16)
    base_steps: int = 300
    batch_size: int = 32
    learning_rate: float = 0.02  # AdamW's tuned rate on this proxy (benchmarks/proxy_validity.py)
    name: str = "digits_conv"
    image_shape = (8, 8, 1)

    def _load(self) -> TaskData:
        return load_digits_split(self.data_seed)
