"""Statement: one line of a program, and the rules that make a list of them well formed.

A program (:class:`~pipeline.program.Program`) is the body of ``train(w, g, m, v, lr, t) ->
update``, one :class:`Statement` ``target = op(*args)`` per line:

* Inputs (:data:`INPUTS`): ``w`` (the weight), ``g`` (its gradient), ``lr`` (the learning
  rate, a scalar), ``t`` (the 1-based step count, a scalar). Inputs may be reassigned.
* State slots (:data:`STATE_SLOTS`) ``m``, ``v``, ``state2``, ``state3``: zero at step 1; the
  value a slot holds at the end of the program is its value at the next step. Slots always
  have ``w``'s shape (a scalar assigned to a slot is broadcast).
* Output (:data:`OUTPUT`): the final value of ``update``; the runner does ``w = w - update``.

:func:`find_problem` is the one statement of well-formedness (known op, arity, target name,
literals where the op takes them and finite in float32, no op of literals only, every read
after a write, ``update`` assigned). The parser, :class:`~pipeline.program.Program` and
:func:`pipeline.abstract.check` all ask it; each reports its answer in its own terms
(a line and column, a :class:`ProgramError`, a rejection reason).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ops import OPS

__all__ = [
    "INPUTS",
    "MAX_STATEMENTS",
    "OUTPUT",
    "SCALAR_INPUTS",
    "STATE_SLOTS",
    "Arg",
    "Fault",
    "Problem",
    "ProgramError",
    "Statement",
    "find_problem",
    "finite_literal",
    "format_number",
    "is_name",
]

INPUTS: tuple[str, ...] = ("w", "g", "lr", "t")
SCALAR_INPUTS: frozenset[str] = frozenset({"lr", "t"})
STATE_SLOTS: tuple[str, ...] = ("m", "v", "state2", "state3")
OUTPUT = "update"
MAX_STATEMENTS = 10_000

# Programs run in float32: a literal is finite when float32 holds it (|x| below the midpoint
# of float32's max and 2**128; from there on it rounds to inf). 1e300 is a finite float but
# an inf in every executor (and a TF conversion error in some ops), so it is refused.
F32_LIMIT = 2.0**128 - 2.0**103

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""A variable name (names starting with ``__`` are refused besides)."""

Arg = str | float


class ProgramError(ValueError):
    """A program that is not well formed. Says where (line, column; 1-based) and what."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        self.message = message
        self.line = line
        self.column = column
        where = ""
        if line is not None:
            where = f"line {line}" + (f", column {column}" if column is not None else "") + ": "
        super().__init__(where + message)


def finite_literal(value: float) -> bool:
    """Whether ``value`` is finite in float32, the precision programs run in."""
    return abs(value) < F32_LIMIT


def format_number(value: float) -> str:
    """The text of a literal: ``repr`` of the float, which parses back to the same float."""
    return repr(float(value))


def is_name(name: str) -> bool:
    """Whether ``name`` may name a variable."""
    return NAME.fullmatch(name) is not None and not name.startswith("__")


@dataclass(frozen=True, slots=True)
class Statement:
    """``target = op(*args)``; each arg is a variable name (str) or a literal (float)."""

    target: str
    op: str
    args: tuple[Arg, ...]

    def to_text(self) -> str:
        op = OPS[self.op]
        texts = [a if isinstance(a, str) else format_number(a) for a in self.args]
        if op.infix is not None:
            return f"{self.target} = {texts[0]} {op.infix} {texts[1]}"
        return f"{self.target} = {self.op}({', '.join(texts)})"

    def reads(self) -> tuple[str, ...]:
        return tuple(a for a in self.args if isinstance(a, str))


# ---- well-formedness --------------------------------------------------------------------------


class Fault(enum.Enum):
    """What makes statements not a well-formed program (``.value`` names the rejection)."""

    UNKNOWN_OP = "unknown_op"
    WRONG_ARITY = "wrong_arity"
    BAD_TARGET = "bad_target"
    UNDEFINED_READ = "undefined_read"
    LITERAL_NOT_ALLOWED = "literal_not_allowed"
    NON_FINITE_LITERAL = "non_finite_literal"
    LITERALS_ONLY = "literals_only"
    NO_UPDATE = "no_update"


@dataclass(frozen=True)
class Problem:
    """The first fault found: in statement ``statement`` (None: the program as a whole), at
    argument ``argument`` (None: the statement as a whole)."""

    fault: Fault
    message: str
    statement: int | None = None
    argument: int | None = None


def find_problem(statements: Sequence[Statement]) -> Problem | None:
    """The first reason ``statements`` are not a well-formed program, or None.

    Statements are checked in order; within one: the op, its arity, the target, then each
    argument (a read of a variable not yet written; a literal where the op wants a variable
    or one float32 cannot hold), then an op of literals only; last, that ``update`` is
    assigned.
    """
    defined = set(INPUTS) | set(STATE_SLOTS)
    for i, st in enumerate(statements):
        problem = _statement_problem(st, defined)
        if problem is not None:
            fault, message, argument = problem
            return Problem(fault, message, i, argument)
        defined.add(st.target)
    if OUTPUT not in defined:
        return Problem(Fault.NO_UPDATE, f"the program never assigns {OUTPUT!r}")
    return None


def _statement_problem(st: Statement, defined: set[str]
                       ) -> tuple[Fault, str, int | None] | None:
    op = OPS.get(st.op)
    if op is None:
        return Fault.UNKNOWN_OP, f"unknown function {st.op!r}", None
    if len(st.args) != op.arity:
        message = f"{op.name} takes {op.arity} argument(s), got {len(st.args)}"
        return Fault.WRONG_ARITY, message, None
    if not is_name(st.target):
        return Fault.BAD_TARGET, f"not a variable name: {st.target!r}", None
    for k, a in enumerate(st.args):
        if isinstance(a, str):
            if a not in defined:
                return Fault.UNDEFINED_READ, f"variable {a!r} is read before it is written", k
        elif not op.const_ok[k]:
            return (Fault.LITERAL_NOT_ALLOWED,
                    f"argument {k + 1} of {op.name} must be a variable, not a number", k)
        elif not finite_literal(a):
            return Fault.NON_FINITE_LITERAL, f"literal {a!r} is not finite in float32", k
    if st.args and not any(isinstance(a, str) for a in st.args):
        return (Fault.LITERALS_ONLY,
                f"{op.name} of numbers only is a constant: write the number instead", 0)
    return None
