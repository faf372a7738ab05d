"""Executors: one step of a program, in NumPy (the reference) or TensorFlow.

Both run the same interpreter loop over the ops registry; a backend only says how to make a
literal and which implementation of an op to call. Only live statements run.

``axis`` is for population-batched execution: tensors are ``[P, ...]`` and reductions act
per population member over ``axis`` (e.g. ``(1, 2)``) instead of over everything.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ops import OPS
from pipeline.program import OUTPUT, Program

__all__ = ["Backend", "NUMPY", "tensorflow_backend", "run_step", "numpy_step", "tf_step"]


@dataclass(frozen=True)
class Backend:
    name: str
    fn: Callable[[Any], Callable]  # Op -> implementation
    const: Callable[[float, Any], Any]  # (value, dtype) -> what an op receives for a literal
    broadcast: Callable[[Any, Any], Any]  # (value, like) -> value with like's shape


def _np_broadcast(x, like):
    return np.broadcast_to(np.asarray(x, like.dtype), like.shape).copy()


NUMPY = Backend(
    "numpy",
    fn=lambda op: op.np_fn,
    const=lambda v, dtype: np.asarray(v, dtype=dtype or np.float32),
    broadcast=_np_broadcast,
)


@functools.cache
def tensorflow_backend() -> Backend:
    """The TF backend (built on first use, so importing this module does not load TF)."""
    import tensorflow as tf

    def broadcast(x, like):
        return tf.broadcast_to(tf.cast(x, like.dtype), tf.shape(like))

    return Backend(
        "tensorflow",
        fn=lambda op: op.tf_fn,
        # Literals stay Python floats: TF converts them to the other argument's dtype (so
        # float16 variables work) and formulas like interp's 1-a are formed in double.
        const=lambda v, dtype: v,
        broadcast=broadcast,
    )


def run_step(
    program: Program,
    backend: Backend,
    w,
    g,
    state: Mapping[str, Any],
    lr,
    t,
    *,
    axis: tuple[int, ...] | None = None,
    dtype=None,
):
    """Run one step: returns ``(update, new_state)``.

    ``state`` maps each slot the program uses to its current value (``w``'s shape); missing
    slots read as zero. ``new_state`` holds every slot in ``state`` plus every slot the
    program writes, broadcast to ``w``'s shape; ``update`` is broadcast to ``w``'s shape.
    """
    env: dict[str, Any] = {"w": w, "g": g, "lr": lr, "t": t}
    for slot in program.slots:
        env[slot] = state[slot] if slot in state else backend.broadcast(0.0, w)
    live = program.live_statements
    for i, st in enumerate(program.statements):
        if i not in live:
            continue
        op = OPS[st.op]
        args = [env[a] if isinstance(a, str) else backend.const(a, dtype) for a in st.args]
        fn = backend.fn(op)
        env[st.target] = fn(*args, axis=axis) if op.axis_arg else fn(*args)
    update = backend.broadcast(env[OUTPUT], w)
    new_state = {s: backend.broadcast(env[s], w) for s in program.slots}
    return update, new_state


def numpy_step(program: Program, w, g, state: Mapping[str, Any], lr: float, t: int):
    """The NumPy reference executor on float32 arrays: ``(update, new_state)``."""
    f32 = np.float32
    w = np.asarray(w, f32)
    with np.errstate(all="ignore"):
        return run_step(
            program,
            NUMPY,
            w,
            np.asarray(g, f32),
            {k: np.asarray(v, f32) for k, v in state.items()},
            np.asarray(lr, f32),
            np.asarray(t, f32),
            dtype=f32,
        )


def tf_step(program: Program, w, g, state: Mapping[str, Any], lr, t, *, axis=None, dtype=None):
    """The TensorFlow executor (traceable inside ``tf.function``): ``(update, new_state)``."""
    return run_step(program, tensorflow_backend(), w, g, state, lr, t, axis=axis, dtype=dtype)
