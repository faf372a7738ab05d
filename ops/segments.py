"""The TF forms of the per-variable reductions (``Op.per_variable``), on flat parameter rows.

The evaluator keeps a population's model parameters as rows ``[c, n_params]``: each row is
every variable of one member's model, flattened and concatenated (``sizes`` columns each).
A program acts on each variable on its own (as ``ProgramOptimizer`` applies it), so a
reduction reduces each variable's columns and broadcasts back over them. Written as a few
matmuls with a one-hot ``[n_params, n_variables]`` matrix instead of one reduction per
variable (hundreds of graph nodes per machine position). Same math as ``ops/table.py``'s
implementations; the evaluator's NumPy-reference test pins them together.

An argument that is a scalar in the reference executor (a flag per row) is held broadcast
over the row, but takes part in a sum as one element, as there.
"""

from __future__ import annotations

from typing import assert_never

import numpy as np

from ops.lazy_tf import tf
from ops.registry import PerVariable
from ops.table import EPS

__all__ = ["per_variable"]


def per_variable(kind: PerVariable, args: list, scalar: list, sizes: tuple[int, ...]):
    """``kind`` on ``args`` (``[c, n_params]`` tensors whose columns are variables of
    ``sizes``); ``scalar[j]`` (``[c]`` bools) marks the rows where argument ``j`` is a
    scalar. Returns ``[c, n_params]``."""
    seg = np.repeat(np.arange(len(sizes)), sizes)
    onehot = np.eye(len(sizes), dtype=np.float32)[seg]  # [n, V]
    inv = tf.constant(1.0 / np.asarray(sizes, np.float32)[None])  # [1, V]

    def total(x):  # per-variable sums, [c, V]
        return tf.matmul(x, onehot)

    def spread(r):  # [c, V] -> [c, n]
        return tf.matmul(r, onehot.T)

    def weight(flag):  # a scalar enters a sum as one element (the broadcast row holds s_v)
        return tf.where(flag[:, None], inv, 1.0)

    def norm(j):
        return tf.sqrt(total(tf.square(args[j])) * weight(scalar[j]))

    def rms(x):
        return tf.sqrt(total(tf.square(x)) * inv)

    match kind:
        case PerVariable.NORM:
            return spread(norm(0))
        case PerVariable.RMS:
            return spread(rms(args[0]))
        case PerVariable.DOT:
            return spread(total(args[0] * args[1]) * weight(scalar[0] & scalar[1]))
        case PerVariable.COSINE_SIM:
            dot = total(args[0] * args[1]) * weight(scalar[0] & scalar[1])
            return spread(dot / (norm(0) * norm(1) + EPS))
        case PerVariable.CLIP_BY_RMS:
            x, c = args
            return x * tf.minimum(1.0, tf.abs(c) / (spread(rms(x)) + EPS))
        case _:
            assert_never(kind)
