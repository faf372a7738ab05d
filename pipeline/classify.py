"""What kind of rule a program is, judged by its behaviour, not its text.

A search's winner can spell Lion in many ways (``sign(m)`` as ``m / sqrt(square(m))``, two
chained interps, a scale folded into ``lr``). So the classifier runs the program with the
NumPy reference executor on fixed random gradients and asks behavioural questions:

* **same step on every coordinate**: at every step after the first, ``|update|`` is one value
  across coordinates (``w = 0``, so weight decay adds nothing);
* **memory**: the update at the last step changes when only the earlier gradients change;
* **scale invariant**: multiplying every gradient by 10 leaves the update as it was (the
  probe's gradients are large, N(0, 100^2), so an epsilon guard does not blur it);
* **linear**: multiplying every gradient by 10 multiplies the update by 10;
* **reads lr**: a live statement reads the learning rate.

Classes, first match: ``sign-momentum`` (same step, memory, reads lr: Lion), ``sign`` (same
step, no memory: signSGD), ``adam-like`` (scale invariant, not the same step), ``sgd-momentum``
and ``sgd`` (linear, with and without memory), ``other``.
"""

from __future__ import annotations

import enum

import numpy as np

from pipeline.execute import numpy_step
from pipeline.program import Program

__all__ = ["RuleClass", "classify"]


class RuleClass(enum.Enum):
    SIGN_MOMENTUM = "sign-momentum"
    SIGN = "sign"
    ADAM_LIKE = "adam-like"
    SGD_MOMENTUM = "sgd-momentum"
    SGD = "sgd"
    OTHER = "other"


def _updates(program: Program, grads: np.ndarray, lr: float) -> np.ndarray:
    """``[steps, dim]``: the program's updates at ``w = 0`` for the gradient sequence."""
    state: dict = {}
    w = np.zeros(grads.shape[1], np.float32)
    out = []
    with np.errstate(all="ignore"):
        for t, g in enumerate(grads, start=1):
            update, state = numpy_step(program, w, g, state, lr, t)
            out.append(np.broadcast_to(np.asarray(update, np.float64), w.shape))
    return np.array(out)


def _close(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    return bool(np.all(np.isfinite(a)) and np.all(np.isfinite(b))
                and np.allclose(a, b, rtol=rtol, atol=1e-12))


def classify(program: Program, *, steps: int = 8, dim: int = 64, seed: int = 0,
             lr: float = 1e-3, rtol: float = 1e-3) -> RuleClass:
    """The behavioural class of ``program`` (see the module doc)."""
    rng = np.random.default_rng(seed)
    grads = (rng.normal(size=(steps, dim)) * 100.0).astype(np.float32)
    base = _updates(program, grads, lr)
    if not np.all(np.isfinite(base)) or not np.any(base[1:]):
        return RuleClass.OTHER
    mag = np.abs(base[1:])
    same_step = bool(np.all(mag.max(axis=1) - mag.min(axis=1) <= rtol * mag.max(axis=1))
                     and np.all(mag.min(axis=1) > 0))
    other = grads.copy()
    other[:-1] = (rng.normal(size=(steps - 1, dim)) * 100.0).astype(np.float32)
    memory = not _close(_updates(program, other, lr)[-1], base[-1], rtol)
    scaled = _updates(program, grads * np.float32(10.0), lr)
    invariant = _close(scaled, base, rtol * 10)
    linear = _close(scaled, base * 10.0, rtol * 10)
    if same_step and program.reads_lr:
        return RuleClass.SIGN_MOMENTUM if memory else RuleClass.SIGN
    if invariant:
        return RuleClass.ADAM_LIKE
    if linear:
        return RuleClass.SGD_MOMENTUM if memory else RuleClass.SGD
    return RuleClass.OTHER
