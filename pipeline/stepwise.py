"""Statements that depend on the step alone, evaluated for many steps ``t`` at once.

A statement whose arguments are literals, ``lr``, ``t`` and earlier such statements has one
value per step. :func:`step_table` computes those values for a whole vector of steps as the
NumPy reference executor computes them one step at a time (float32 after every op, the same
NumPy functions), so the results are bit-identical: the evaluator hoists such statements out
of its training loop, and the algebra asks :func:`constant_over_steps` whether one is the
same at every step.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from ops import OPS
from pipeline.statement import Statement

__all__ = ["T_LAST", "constant_over_steps", "step_table", "step_values"]


def step_values(statements: Sequence[Statement], t: np.ndarray, lr: float) -> list[np.ndarray]:
    """The value of each statement (in order, each ``t.shape``) at the steps ``t`` (float32)
    with learning rate ``lr``. A statement reads ``t``, ``lr``, literals and earlier targets."""
    env: dict[str, np.ndarray] = {"lr": np.full_like(t, lr), "t": t}
    columns = []
    with np.errstate(all="ignore"):
        for st in statements:
            op = OPS[st.op]
            args = [env[a] if isinstance(a, str) else a for a in st.args]
            if op.axis_arg:  # reduces a scalar: one element per step, not the steps
                value = [op.np_fn(*(a[k] if isinstance(a, np.ndarray) else a for a in args),
                                  axis=None) for k in range(len(t))]
            else:
                value = op.np_fn(*args)
            env[st.target] = np.broadcast_to(np.asarray(value, np.float32), t.shape)
            columns.append(env[st.target])
    return columns


def step_table(statements: Sequence[Statement], t: np.ndarray, lr: float) -> np.ndarray:
    """``[len(t), len(statements)]``: :func:`step_values` as the columns of one array."""
    columns = step_values(statements, t, lr)
    return np.stack(columns, axis=1) if columns else np.zeros((len(t), 0), np.float32)


T_LAST = 2**24
"""The last step count float32 ``t`` holds exactly (every one up to it is checked)."""
_T_CHUNK = 2**18


def _same_bits(x: np.ndarray, value: np.float32) -> bool:
    return bool(np.all(x.view(np.int32) == np.asarray(value, np.float32).view(np.int32)))


@functools.lru_cache(maxsize=1024)
def constant_over_steps(statements: tuple[Statement, ...]) -> float | None:
    """The value of the last of ``statements`` (which read ``t`` and literals, never ``lr``)
    if it is the same finite float32 at every step ``t = 1 .. 2**24`` (checked exhaustively;
    a cheap sample first), else None."""

    def last(t: np.ndarray) -> np.ndarray:
        return step_values(statements, t, math.nan)[-1]  # nan: lr is not read

    probe = np.array([1, 2, 3, 10, 1000, 123457, T_LAST], np.float32)
    first = last(probe)[0]
    if not np.isfinite(first) or not _same_bits(last(probe), first):
        return None
    for lo in range(1, T_LAST + 1, _T_CHUNK):
        t = np.arange(lo, min(lo + _T_CHUNK, T_LAST + 1), dtype=np.float32)
        if not _same_bits(last(t), first):
            return None
    return float(first)
