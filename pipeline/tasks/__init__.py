"""The task registry: proxy and target tasks for the evaluator.

>>> from pipeline.tasks import make_task
>>> make_task("teacher").steps
200

``make_task(name, scale=1, seed=0, **fields)`` builds a task; ``scale`` grows width, steps and
examples by ``sqrt(scale)`` each (so ``scale=10`` costs ~10x). ``TASKS`` maps names to classes.
"""

from __future__ import annotations

from pipeline.tasks.base import Metric, Task, TaskData
from pipeline.tasks.charlm import CharLM
from pipeline.tasks.digits import DigitsConv, DigitsMLP
from pipeline.tasks.image_files import (
    Cifar10Conv,
    DatasetNotFound,
    MnistMLP,
    load_cifar10,
    load_mnist,
)
from pipeline.tasks.synthetic import SynthMLP, TeacherDeep
from pipeline.tasks.teacher import TeacherRegression

__all__ = [
    "TASKS",
    "Cifar10Conv",
    "CharLM",
    "DatasetNotFound",
    "DigitsConv",
    "DigitsMLP",
    "Metric",
    "MnistMLP",
    "SynthMLP",
    "Task",
    "TaskData",
    "TeacherDeep",
    "TeacherRegression",
    "load_cifar10",
    "load_mnist",
    "make_task",
]

TASKS: dict[str, type[Task]] = {
    "teacher": TeacherRegression,
    "digits_mlp": DigitsMLP,
    "digits_conv": DigitsConv,
    "char_lm": CharLM,
    "mnist_mlp": MnistMLP,
    "cifar10_conv": Cifar10Conv,
    "synth_mlp": SynthMLP,
    "teacher_deep": TeacherDeep,
}


def make_task(name: str, scale: float = 1.0, seed: int = 0, **fields) -> Task:
    """The task registered as ``name`` at ``scale``, seeded by ``seed``."""
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(
            f"Argument `name` must be one of {sorted(TASKS)}. Received: name={name!r}"
        ) from None
    return cls(scale=scale, seed=seed, **fields)
