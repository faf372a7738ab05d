"""scikit-learn's bundled 8x8 digits (1797 images, no download): an MLP and a ConvNet."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.tasks.base import TaskData, scaled
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
    """Digits with an MLP 64-hidden-10 (hidden = 64 at 1x). Metric: validation accuracy."""

    scale: float = 1.0
    seed: int = 0
    data_seed: int = 0
    base_hidden: int = 64
    base_steps: int = 300
    batch_size: int = 32
    learning_rate: float = 0.01
    name: str = "digits_mlp"
    image_shape = (8, 8, 1)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @property
    def steps(self) -> int:
        return scaled(self.base_steps, self.scale)

    def _load(self) -> TaskData:
        return load_digits_split(self.data_seed)


@dataclass(frozen=True)
class DigitsConv(ConvClassifier):
    """Digits with a small ConvNet (8 and 16 channels at 1x). Metric: validation accuracy."""

    scale: float = 1.0
    seed: int = 0
    data_seed: int = 0
    base_channels: tuple[int, int] = (8, 16)
    base_steps: int = 300
    batch_size: int = 32
    learning_rate: float = 0.01
    name: str = "digits_conv"
    image_shape = (8, 8, 1)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @property
    def steps(self) -> int:
        return scaled(self.base_steps, self.scale)

    def _load(self) -> TaskData:
        return load_digits_split(self.data_seed)
