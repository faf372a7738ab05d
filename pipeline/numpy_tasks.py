"""Cheap NumPy fitness functions: a program trains a tiny problem with the reference executor.

Fitness is *higher is better* everywhere in lionforge; a candidate that produces NaN/inf or
blows up scores :data:`pipeline.fitness.WORST`. These tasks let the search engine and the simplifier
be built and tested without TensorFlow; the TF tasks live in ``pipeline.tasks``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipeline.execute import numpy_step
from pipeline.fitness import WORST, finite_or_worst
from pipeline.program import Program

__all__ = ["Quadratic", "LogisticRegression"]


def _train(program: Program, w0: np.ndarray, grad, steps: int, lr: float) -> np.ndarray | None:
    w = w0.copy()
    state: dict = {}
    for t in range(1, steps + 1):
        update, state = numpy_step(program, w, grad(w, t), state, lr, t)
        w = w - update
        if not np.all(np.isfinite(w)) or np.max(np.abs(w)) > 1e15:
            return None
    return w


@dataclass(frozen=True)
class Quadratic:
    """An ill-conditioned quadratic ``0.5 (w - w*)^T H (w - w*)`` with noisy gradients.

    ``H`` is diagonal with eigenvalues log-spaced in ``[1, condition]``. Fitness is
    ``-log10(loss + 1e-12)`` after ``steps`` steps at learning rate ``lr``: one unit is a
    10x lower loss.
    """

    dim: int = 16
    condition: float = 100.0
    steps: int = 100
    lr: float = 1.0
    noise: float = 0.01
    seed: int = 0
    _data: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def _problem(self):
        if not self._data:
            rng = np.random.default_rng(self.seed)
            self._data["h"] = np.logspace(0, np.log10(self.condition), self.dim).astype(np.float32)
            self._data["w_star"] = rng.normal(size=self.dim).astype(np.float32)
            self._data["w0"] = rng.normal(size=self.dim).astype(np.float32)
            self._data["noise"] = (
                self.noise * rng.normal(size=(self.steps, self.dim))
            ).astype(np.float32)
        return self._data

    def loss(self, w: np.ndarray) -> float:
        d = self._problem()
        r = w - d["w_star"]
        return float(0.5 * np.sum(d["h"] * r * r))

    def __call__(self, program: Program) -> float:
        d = self._problem()

        def grad(w, t):
            return d["h"] * (w - d["w_star"]) + d["noise"][t - 1]

        w = _train(program, d["w0"], grad, self.steps, self.lr)
        if w is None:
            return WORST
        return finite_or_worst(-math.log10(self.loss(w) + 1e-12))


@dataclass(frozen=True)
class LogisticRegression:
    """Full-batch logistic regression on a fixed synthetic, linearly separable-ish problem.

    Fitness is the negative validation log-loss after ``steps`` steps.
    """

    n: int = 256
    dim: int = 8
    steps: int = 100
    lr: float = 1.0
    seed: int = 0
    _data: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def _problem(self):
        if not self._data:
            rng = np.random.default_rng(self.seed)
            true_w = rng.normal(size=self.dim).astype(np.float32)
            x = rng.normal(size=(2 * self.n, self.dim)).astype(np.float32)
            y = (x @ true_w + 0.5 * rng.normal(size=2 * self.n) > 0).astype(np.float32)
            self._data.update(x=x[: self.n], y=y[: self.n], xv=x[self.n :], yv=y[self.n :])
        return self._data

    @staticmethod
    def _logloss(w, x, y) -> float:
        z = x @ w
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    def __call__(self, program: Program) -> float:
        d = self._problem()

        def grad(w, t):
            p = 1.0 / (1.0 + np.exp(-np.clip(d["x"] @ w, -50, 50)))
            return (d["x"].T @ (p - d["y"]) / len(d["y"])).astype(np.float32)

        w = _train(program, np.zeros(self.dim, np.float32), grad, self.steps, self.lr)
        if w is None:
            return WORST
        return finite_or_worst(-self._logloss(w, d["xv"], d["yv"]))
