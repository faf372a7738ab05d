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
from pipeline.program import Program
from pipeline.ranges import fast_statements
from pipeline.statement import OUTPUT

__all__ = [
    "Backend",
    "NUMPY",
    "numpy_step",
    "run_step",
    "run_step_constants",
    "step_constant_statements",
    "tensorflow_backend",
    "tf_step",
]


@dataclass(frozen=True)
class Backend:
    """How one framework runs ops. Literals reach ops as Python floats in both backends, so
    a formula such as interp's ``1 - a`` is formed in double precision, then rounded once."""

    name: str
    fn: Callable[[Any], Callable]  # Op -> implementation
    fast: Callable[[Any], Callable]  # FastPath -> implementation
    result: Callable[[Any, Any], Any]  # (op output, like) -> value in like's dtype
    broadcast: Callable[[Any, Any], Any]  # (value, like) -> value with like's shape


def _np_broadcast(x, like):
    return np.broadcast_to(np.asarray(x, like.dtype), like.shape).copy()


NUMPY = Backend(
    "numpy",
    fn=lambda op: op.np_fn,
    fast=lambda path: path.np_fn,
    # NumPy promotes to float64 when a Python scalar meets a NumPy scalar; keep float32.
    result=lambda x, like: np.asarray(x, like.dtype),
    broadcast=_np_broadcast,
)


@functools.cache
def tensorflow_backend() -> Backend:
    """The TF backend (built on first use, so importing this module does not load TF)."""
    import tensorflow as tf

    def broadcast(x, like):
        x = tf.cast(x, like.dtype)
        if x.shape.is_fully_defined() and x.shape == like.shape:
            return x  # statically the right shape already: no op in the graph
        return tf.broadcast_to(x, tf.shape(like))

    return Backend(
        "tensorflow",
        fn=lambda op: op.tf_fn,
        fast=lambda path: path.tf_fn,
        # TF converts a Python float to the other argument's dtype, so float16 works too.
        result=lambda x, like: x,
        broadcast=broadcast,
    )


@functools.lru_cache(maxsize=4096)
def inplace_plan(program: Program) -> dict[int, tuple[str, int]]:
    """Slots an optimizer may update in place: statement index -> (slot, InPlace form index).

    A slot qualifies when it is written once, by an op with an :class:`~ops.registry.InPlace`
    form whose accumulating argument is the slot's value at the start of the step. Statements
    after it read the new value (the in-place hook returns it).
    """
    plan: dict[int, tuple[str, int]] = {}
    live = program.live_statements
    for slot in program.live_slots:
        writers = [i for i, st in enumerate(program.statements) if st.target == slot]
        if len(writers) != 1 or writers[0] not in live:
            continue
        i = writers[0]
        st = program.statements[i]
        for k, form in enumerate(OPS[st.op].inplace):
            if st.args[form.arg] == slot:
                plan[i] = (slot, k)
                break
    return plan


def step_constant_statements(program: Program) -> frozenset[int]:
    """Live statements whose value depends only on ``lr``, ``t`` and literals.

    Their values are the same for every variable in a step, so an optimizer computes them
    once per step (see :func:`run_step_constants`) instead of once per variable.
    """
    constant = {"lr", "t"}
    out = set()
    live = program.live_statements
    for i, st in enumerate(program.statements):
        if i in live and all(a in constant for a in st.reads()):
            out.add(i)
            constant.add(st.target)
        else:
            constant.discard(st.target)
    return frozenset(out)


def _apply(backend: Backend, op, args, like, axis, fast: bool = False):
    fn = backend.fast(op.fast) if fast else backend.fn(op)
    return backend.result(fn(*args, axis=axis) if op.axis_arg else fn(*args), like)


def run_step_constants(program: Program, backend: Backend, lr, t, like) -> dict[int, Any]:
    """Values of :func:`step_constant_statements`, by statement index."""
    env: dict[str, Any] = {"lr": lr, "t": t}
    out: dict[int, Any] = {}
    fast = fast_statements(program)
    for i in sorted(step_constant_statements(program)):
        st = program.statements[i]
        args = [env[a] if isinstance(a, str) else a for a in st.args]
        env[st.target] = out[i] = _apply(backend, OPS[st.op], args, like, None, i in fast)
    return out


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
    known: Mapping[int, Any] | None = None,
    fast: bool = True,
    reachable_state: bool = False,
    inplace: Callable[[str, Any], Any] | None = None,
):
    """Run one step: returns ``(update, new_state)``.

    ``state`` maps each slot the program uses to its current value (``w``'s shape); missing
    slots read as zero. ``new_state`` holds every slot the program uses, broadcast to
    ``w``'s shape; ``update`` is broadcast to ``w``'s shape. ``known`` gives precomputed
    values of some statements by index (e.g. from :func:`run_step_constants`). ``fast=False``
    runs every op guarded (the fast paths are exact, so this changes nothing but the speed).
    ``reachable_state=True`` promises that ``state`` was reached from zero slots by this
    program alone (an optimizer's own state), which lets more guards go (``pipeline.ranges``).
    ``inplace(slot, delta)`` (for an optimizer that owns its slot variables) is called for
    the slots of :func:`inplace_plan` instead of computing their new value; it applies the
    delta in place and returns the new value, which later statements read. Those slots are
    then absent from ``new_state``.
    """
    env: dict[str, Any] = {"w": w, "g": g, "lr": lr, "t": t}
    for slot in program.slots:
        env[slot] = state[slot] if slot in state else backend.broadcast(0.0, w)
    live = program.live_statements
    unguarded = fast_statements(program, reachable_state) if fast else frozenset()
    plan = inplace_plan(program) if inplace is not None else {}
    known = known or {}
    for i, st in enumerate(program.statements):
        if i in known:
            env[st.target] = known[i]
        elif i in plan:
            slot, k = plan[i]
            args = [env[a] if isinstance(a, str) else a for a in st.args]
            delta = backend.broadcast(OPS[st.op].inplace[k].tf_delta(*args), w)
            env[st.target] = inplace(slot, delta)
        elif i in live:
            args = [env[a] if isinstance(a, str) else a for a in st.args]
            env[st.target] = _apply(backend, OPS[st.op], args, w, axis, i in unguarded)
    update = backend.broadcast(env[OUTPUT], w)
    done = {program.statements[i].target for i in plan}
    new_state = {s: backend.broadcast(env[s], w) for s in program.slots if s not in done}
    return update, new_state


def numpy_step(
    program: Program, w, g, state: Mapping[str, Any], lr: float, t: int, *, fast: bool = True
):
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
            fast=fast,
        )


def tf_step(
    program: Program, w, g, state: Mapping[str, Any], lr, t, *, axis=None, known=None,
    reachable_state: bool = False, inplace=None,
):
    """The TensorFlow executor (traceable inside ``tf.function``): ``(update, new_state)``
    (and the in-place deltas with ``inplace=True``; see :func:`run_step`)."""
    return run_step(program, tensorflow_backend(), w, g, state, lr, t, axis=axis, known=known,
                    reachable_state=reachable_state, inplace=inplace)
