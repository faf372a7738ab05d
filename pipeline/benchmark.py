"""Benchmark: any optimizers on target tasks, with a learning-rate grid and several seeds.

This is how a user decides whether a discovered optimizer is worth adopting, so every
contender gets the same treatment: the same number of learning rates (a grid of multipliers
around the contender's own base rate), the same seeds (initialization and data order), the
same steps, the same training loop. A contender is any Keras optimizer factory, so programs
(through :class:`~pipeline.keras_optimizer.ProgramOptimizer`) and Keras' built-ins compete on
equal terms.

A grid must cover the optimum: when a contender's best rate is the smallest or largest
tried, the grid grows on that side, one step (the ratio of the two multipliers at that edge)
at a time, until the best is inside or ``max_extend`` steps were added on that side.

The result holds, per (contender, task), the best-of-grid validation metric (mean and spread
over seeds at the learning rate with the best mean), every rate tried, and the mean
training-loss curve at the best rate.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from pipeline.fitness import WORST, mean_or_worst, spread
from pipeline.keras_optimizer import ProgramOptimizer
from pipeline.program import Program
from pipeline.tasks import Metric, Task

__all__ = [
    "DISCOVERED",
    "KERAS_PREFIX",
    "BenchmarkResult",
    "BenchmarkRow",
    "Contender",
    "keras_contender",
    "program_contender",
    "run_benchmark",
    "train_with_optimizer",
]

DEFAULT_MULTIPLIERS = (1 / 3, 1.0, 3.0)
KERAS_PREFIX = "keras_"  # a Keras built-in's contender name: keras_adamw, keras_lion, ...
DISCOVERED = "discovered"  # the contender name of the program a discover benchmarks


class _ExpectedRetracing(logging.Filter):
    """Each run builds its own compiled loop on purpose; TF's retracing warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_ExpectedRetracing())


@dataclass(frozen=True)
class Contender:
    """An optimizer in the comparison: ``make(lr)`` builds a fresh Keras optimizer."""

    name: str
    make: Callable[[float], keras.optimizers.Optimizer] = field(compare=False)
    base_lr: float
    uses_lr: bool = True  # False: a program that never reads lr (every grid point is the same)


def program_contender(name: str, program: Program, base_lr: float) -> Contender:
    """A program, run by ProgramOptimizer, with its grid centred on ``base_lr``."""
    return Contender(name, lambda lr: ProgramOptimizer(program, learning_rate=lr), base_lr,
                     uses_lr=program.reads_lr)


_KERAS = {
    "adamw": lambda lr: keras.optimizers.AdamW(learning_rate=lr),
    "lion": lambda lr: keras.optimizers.Lion(learning_rate=lr),
    "adam": lambda lr: keras.optimizers.Adam(learning_rate=lr),
    "sgd": lambda lr: keras.optimizers.SGD(learning_rate=lr, momentum=0.9),
}


def keras_contender(name: str, base_lr: float) -> Contender:
    """One of Keras' built-ins (``adamw``, ``lion``, ``adam``, ``sgd``)."""
    if name not in _KERAS:
        raise ValueError(f"Argument `name` must be one of {sorted(_KERAS)}. Received: {name!r}")
    return Contender(f"{KERAS_PREFIX}{name}", _KERAS[name], base_lr)


def _metric(task: Task, out: tf.Tensor, y: tf.Tensor) -> float:
    if task.metric is Metric.VAL_ACCURACY:
        acc = task.accuracy(out, y)
        return float(acc[0])
    return -float(task.loss(out, y)[0])


def train_with_optimizer(
    task: Task, optimizer: keras.optimizers.Optimizer
) -> tuple[np.ndarray, float]:
    """Train ``task``'s model once with ``optimizer``: (training-loss curve, val metric).

    The model is the task's functional model at population size 1, so every optimizer sees
    the same initialization (``task.init_params()``) and data order (``task.batch_indices()``).
    A diverging run gets metric ``-inf``.
    """
    data = task.data()
    params = [tf.Variable(p[None], name=f"p{i}") for i, p in enumerate(task.init_params())]
    order = tf.constant(task.batch_indices())
    x, y = tf.constant(data.x_train), tf.constant(data.y_train)

    @tf.function(autograph=False, reduce_retracing=True)
    def train() -> tf.Tensor:
        def body(i, losses):
            idx = order[i]
            xb, yb = tf.gather(x, idx), tf.gather(y, idx)
            with tf.GradientTape() as tape:
                loss = task.loss(task.apply(params, xb), yb)[0]
            optimizer.apply(tape.gradient(loss, params), params)
            return i + 1, losses.write(i, loss)

        losses = tf.TensorArray(tf.float32, size=task.steps)
        _, losses = tf.while_loop(
            lambda i, _: i < task.steps, body, (tf.constant(0), losses), parallel_iterations=1
        )
        return losses.stack()

    curve = train().numpy()
    out = task.apply(params, tf.constant(data.x_val))
    metric = _metric(task, out, tf.constant(data.y_val))
    if not (math.isfinite(metric) and np.all(np.isfinite(curve))):
        metric = WORST
    return curve, metric


@dataclass(frozen=True)
class BenchmarkRow:
    """One contender on one task: the best learning rate of the grid and its scores."""

    optimizer: str
    task: str
    metric: str
    best_lr: float
    mean: float
    std: float
    per_seed: tuple[float, ...]
    grid: tuple[tuple[float, float], ...]  # every rate tried, ascending: (lr, mean over seeds)
    uses_lr: bool = True  # False: the optimizer never reads its learning rate
    extended: tuple[int, int] = (0, 0)  # steps the grid grew (below, above) the initial one

    @property
    def at_grid_edge(self) -> bool:
        """The best learning rate is the smallest or largest tried (even after the grid grew):
        the optimum may lie beyond it."""
        lrs = [lr for lr, _ in self.grid]
        return self.uses_lr and len(lrs) > 1 and self.best_lr in (min(lrs), max(lrs))

    def to_dict(self) -> dict:
        return {
            "optimizer": self.optimizer,
            "task": self.task,
            "metric": self.metric,
            "best_lr": self.best_lr,
            "mean": self.mean,
            "std": self.std,
            "per_seed": list(self.per_seed),
            "at_grid_edge": self.at_grid_edge,
            "uses_lr": self.uses_lr,
            "grid": [list(point) for point in self.grid],
            "extended": list(self.extended),
        }


@dataclass(frozen=True)
class BenchmarkResult:
    rows: tuple[BenchmarkRow, ...]
    curves: dict[tuple[str, str], np.ndarray]  # (optimizer, task) -> mean loss curve at best lr

    def table(self) -> list[dict]:
        return [r.to_dict() for r in self.rows]

    def format(self) -> str:
        """A plain-text table, tasks as blocks, best mean first; '*' marks a best learning
        rate at the edge of the grid; 'ignored' a program that never reads its learning rate;
        'rates tried' is the grid's span and size, '+' where it grew past the initial grid."""
        lines = [f"{'task':<14} {'optimizer':<22} {'metric':<13} {'best lr':>10} "
                 f"{'mean':>10} {'std':>9}  rates tried"]
        for task in dict.fromkeys(r.task for r in self.rows):
            rows = sorted((r for r in self.rows if r.task == task), key=lambda r: -r.mean)
            for r in rows:
                edge = "*" if r.at_grid_edge else " "
                lr = f"{r.best_lr:>9.2e}" if r.uses_lr else f"{'ignored':>9}"
                lo, hi = r.grid[0][0], r.grid[-1][0]
                span = f"{lo:.1e}" if len(r.grid) == 1 else f"{lo:.1e}..{hi:.1e}"
                grew = "+" if any(r.extended) else ""
                lines.append(f"{r.task:<14} {r.optimizer:<22} {r.metric:<13} {lr}"
                             f"{edge} {r.mean:>10.4f} {r.std:>9.4f}  "
                             f"{span} ({len(r.grid)}{grew})")
        if any(any(r.extended) for r in self.rows):
            lines.append("+ grid grown past the initial multipliers: the best rate was at an edge")
        if any(r.at_grid_edge for r in self.rows):
            lines.append("* best learning rate at the edge of the grid: a wider grid may do better")
        if not all(r.uses_lr for r in self.rows):
            lines.append("ignored: the program never reads lr; its step size is built in")
        return "\n".join(lines)


def run_benchmark(
    contenders: Sequence[Contender],
    tasks: Sequence[Task],
    *,
    lr_multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    seeds: Sequence[int] = (0, 1),
    max_extend: int = 2,
) -> BenchmarkResult:
    """Every contender x task x learning rate x seed; best-of-grid per contender and task.

    Each contender starts on ``base_lr x lr_multipliers``. While its best rate (best mean over
    seeds; on a tie the smaller rate) is the smallest or largest tried, the grid grows on that
    side by one step, the ratio of the two initial multipliers at that edge, at most
    ``max_extend`` steps a side; a row still at an edge after that says so
    (:attr:`BenchmarkRow.at_grid_edge`). A program that never reads its learning rate trains
    the same at every grid point: it runs once, at its base learning rate, and its row says
    so (``uses_lr=False``).
    """
    mults = sorted(set(lr_multipliers))
    if not mults or mults[0] <= 0:
        raise ValueError(
            "Argument `lr_multipliers` must be non-empty and positive. "
            f"Received: lr_multipliers={tuple(lr_multipliers)}"
        )
    if max_extend < 0:
        raise ValueError(f"Argument `max_extend` must be >= 0. Received: max_extend={max_extend}")
    rows, curves = [], {}
    for task in tasks:
        for c in contenders:
            grid, extended, runs = _tune(c, task, mults if c.uses_lr else [1.0], seeds,
                                         max_extend)
            best_lr = grid[_best(grid)][0]
            per_seed = tuple(runs[best_lr, s][1] for s in seeds)
            rows.append(
                BenchmarkRow(
                    optimizer=c.name,
                    task=task.name,
                    metric=task.metric.value,
                    best_lr=best_lr,
                    mean=mean_or_worst(per_seed),
                    std=spread(per_seed),
                    per_seed=per_seed,
                    grid=grid,
                    uses_lr=c.uses_lr,
                    extended=extended,
                )
            )
            curves[c.name, task.name] = np.mean([runs[best_lr, s][0] for s in seeds], axis=0)
    return BenchmarkResult(tuple(rows), curves)


def _tune(
    c: Contender, task: Task, mults: Sequence[float], seeds: Sequence[int], max_extend: int
) -> tuple[tuple[tuple[float, float], ...], tuple[int, int], dict]:
    """``c`` on ``task`` at ``base_lr x mults`` (ascending), grown past an edge that holds the
    best: (grid of (lr, mean), steps grown (below, above), {(lr, seed): run})."""
    runs: dict[tuple[float, int], tuple[np.ndarray, float]] = {}

    def score(mult: float) -> tuple[float, float]:
        lr = c.base_lr * mult
        for seed in seeds:
            runs[lr, seed] = train_with_optimizer(dataclasses.replace(task, seed=seed), c.make(lr))
        return lr, mean_or_worst([runs[lr, s][1] for s in seeds])

    grid = [score(m) for m in mults]
    grown = [0, 0]
    if len(mults) > 1:
        edge, step = (mults[0], mults[-1]), (mults[0] / mults[1], mults[-1] / mults[-2])
        while True:
            side = {0: 0, len(grid) - 1: 1}.get(_best(grid))  # 0: the lowest rate, 1: highest
            if side is None or grown[side] >= max_extend:
                break
            grown[side] += 1
            point = score(edge[side] * step[side] ** grown[side])
            grid = [point, *grid] if side == 0 else [*grid, point]
    return tuple(grid), (grown[0], grown[1]), runs


def _best(grid: Sequence[tuple[float, float]]) -> int:
    """Index of the best mean (the first, i.e. the smallest rate, on a tie)."""
    return max(range(len(grid)), key=lambda i: (grid[i][1], -i))
