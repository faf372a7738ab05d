"""Abstract execution: reject broken programs before any training.

A program runs on abstract values instead of numbers: each value is a *shape class*
(scalar or ``w``-shaped tensor; every value is float32, so there is no dtype to track)
plus the set of inputs it depends on, across steps (through the state slots). That is
enough to catch, in microseconds, the programs that would only waste an evaluation:

* statements that are not a well-formed program (unknown op, wrong arity, a literal where
  the op wants a variable, an op of literals only, a non-finite literal, a bad target name,
  a read of a variable before it is written, no ``update``): the rules of
  :func:`pipeline.statement.find_problem`, the ones the parser and
  :class:`~pipeline.program.Program` apply, each fault reported as the same-named
  :class:`Rejection`;
* a reduction applied to a scalar, or to a scalar and a tensor (a shape error);
* an ``update`` whose shape is not ``w``'s, an ``update`` that does not
  depend on ``g`` (now or through state at a later step), an ``update`` that does not
  depend on ``lr`` (``require_lr``, on by default: a rule with its step size built in
  ignores ``learning_rate=`` and every schedule, and a search that may write one mostly
  tunes the step size instead of finding an update rule);
* too many statements or state slots for the search's budget.

:func:`check` returns a :class:`Rejection` or ``None`` when the program is accepted. It takes
raw statements (what a mutation produces) so that it can judge programs that
:class:`~pipeline.program.Program` would refuse to construct.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from ops import OPS, Shape
from pipeline.program import Program
from pipeline.statement import (
    INPUTS,
    OUTPUT,
    SCALAR_INPUTS,
    STATE_SLOTS,
    Fault,
    Statement,
    find_problem,
)

__all__ = ["Rejection", "check", "check_program"]


class Rejection(enum.Enum):
    """Why a candidate was rejected; ``.value`` is the text stored in a CandidateRecord."""

    TOO_LONG = "too_long"
    TOO_MANY_SLOTS = "too_many_slots"
    UNKNOWN_OP = "unknown_op"
    WRONG_ARITY = "wrong_arity"
    BAD_TARGET = "bad_target"
    LITERAL_NOT_ALLOWED = "literal_not_allowed"
    LITERALS_ONLY = "literals_only"
    NON_FINITE_LITERAL = "non_finite_literal"
    UNDEFINED_READ = "undefined_read"
    REDUCE_SHAPE = "reduce_shape_mismatch"
    NO_UPDATE = "no_update"
    UPDATE_SHAPE = "update_shape_mismatch"
    UPDATE_IGNORES_GRADIENT = "update_ignores_gradient"
    IGNORES_LR = "ignores_lr"
    # Not produced by check(): the mutator's own reasons to redraw.
    UNCHANGED = "unchanged"
    INVALID_PROGRAM = "invalid_program"  # Program() refused what check() accepted


_SCALAR, _TENSOR = False, True  # the shape class: is it w-shaped?


def check(
    statements: Sequence[Statement], *, max_len: int | None = None, n_slots: int = 4,
    require_lr: bool = True,
) -> Rejection | None:
    """Abstractly execute ``statements``; the first reason to reject them, or ``None``.

    ``max_len`` caps the number of statements (``None``: no cap); ``n_slots`` caps how many
    distinct state slots the program may use; ``require_lr`` rejects an ``update`` that does
    not depend on ``lr`` (now or through state).
    """
    if max_len is not None and len(statements) > max_len:
        return Rejection.TOO_LONG
    problem = find_problem(statements)
    if problem is not None and problem.fault is not Fault.NO_UPDATE:
        return Rejection(problem.fault.value)
    used_slots = {name for st in statements for name in (st.target, *st.reads())
                  if name in STATE_SLOTS}
    if len(used_slots) > n_slots:
        return Rejection.TOO_MANY_SLOTS
    if problem is not None:
        return Rejection.NO_UPDATE
    return _flow(statements, require_lr)


def check_program(program: Program, *, max_len: int | None = None, n_slots: int = 4,
                  require_lr: bool = True):
    """:func:`check` for a constructed :class:`Program`."""
    return check(program.statements, max_len=max_len, n_slots=n_slots, require_lr=require_lr)


def _flow(statements: Sequence[Statement], require_lr: bool) -> Rejection | None:
    """Shape classes and input dependence, to a fixed point over steps (state slots)."""
    slot_deps: dict[str, frozenset[str]] = {s: frozenset() for s in STATE_SLOTS}
    while True:
        shape: dict[str, bool] = {x: x not in SCALAR_INPUTS for x in INPUTS}
        deps: dict[str, frozenset[str]] = {x: frozenset({x}) for x in INPUTS}
        for s in STATE_SLOTS:
            shape[s] = _TENSOR
            deps[s] = slot_deps[s]
        for st in statements:
            op = OPS[st.op]
            names = [a for a in st.args if isinstance(a, str)]
            d = frozenset().union(*(deps[a] for a in names))
            match op.shape:
                case Shape.ELEMENTWISE:
                    out = any(shape[a] for a in names)
                case Shape.REDUCE:
                    if not all(shape[a] for a in names):
                        return Rejection.REDUCE_SHAPE
                    out = _SCALAR
                case Shape.CONST:
                    out = _SCALAR
            shape[st.target] = _TENSOR if st.target in STATE_SLOTS else out
            deps[st.target] = d
        new = {s: deps[s] | slot_deps[s] if s in deps else slot_deps[s] for s in STATE_SLOTS}
        if new == slot_deps:
            break
        slot_deps = new
    if not shape[OUTPUT]:
        return Rejection.UPDATE_SHAPE
    if "g" not in deps[OUTPUT]:
        return Rejection.UPDATE_IGNORES_GRADIENT
    if require_lr and "lr" not in deps[OUTPUT]:
        return Rejection.IGNORES_LR
    return None
