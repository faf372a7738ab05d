"""Program: an optimizer as an immutable, hashable tuple of statements.

A program is the body of ``train(w, g, m, v, lr, t) -> update``::

    c = interp(g, m, 0.9)
    u = sign(c)
    update = u * lr
    m = interp(g, m, 0.99)

The pieces: :mod:`pipeline.statement` (a statement, the inputs, state slots and output, and
the one well-formedness check), :mod:`pipeline.parse` (the text form and its parser) and
:mod:`pipeline.dataflow` (def-use, liveness, the structural hash). A :class:`Program` ties
them together: it is built by :meth:`Program.parse` or from statements (both validate) and
computes its derived facts once, cached on the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.dataflow import Dataflow
from pipeline.parse import parse_statements
from pipeline.statement import (
    MAX_STATEMENTS,
    STATE_SLOTS,
    Fault,
    ProgramError,
    Statement,
    find_problem,
    is_name,
)

__all__ = ["IGNORES_LR", "Program"]

# What a user is told wherever a rule that never reads ``lr`` is loaded, shown or exported.
IGNORES_LR = ("this rule never reads lr: its step size is built in, and the learning rate "
              "given to it (learning_rate=, a schedule) has no effect")


def _validate(statements: tuple[Statement, ...]) -> None:
    """Raise :class:`ProgramError` unless ``statements`` are a well-formed program."""
    if len(statements) > MAX_STATEMENTS:
        raise ProgramError(f"program has {len(statements)} statements; at most {MAX_STATEMENTS}")
    for st in statements:
        if not isinstance(st, Statement):
            raise ProgramError(f"a statement must be a Statement, got {type(st).__name__}")
        for a in st.args:
            if not isinstance(a, str | float | int) or isinstance(a, bool):
                raise ProgramError(f"an argument is a name or a float, got {a!r}")
            if isinstance(a, str) and not is_name(a):
                raise ProgramError(f"not a variable name: {a!r}")
    problem = find_problem(statements)
    if problem is not None:
        where = (f" (statement {problem.statement + 1})"
                 if problem.fault is Fault.UNDEFINED_READ else "")
        raise ProgramError(problem.message + where)


@dataclass(frozen=True)
class Program:
    """An optimizer program: an immutable, hashable tuple of statements.

    Build one with :meth:`parse` or from statements; both validate. Derived facts
    (liveness, the structural hash) are computed once and cached on the value.
    """

    statements: tuple[Statement, ...]
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.statements, tuple):
            object.__setattr__(self, "statements", tuple(self.statements))
        _validate(self.statements)

    # -- text --

    @classmethod
    def parse(cls, text: str) -> Program:
        """Parse program text; raises :class:`ProgramError` with line and column."""
        return cls(parse_statements(text))

    def to_text(self) -> str:
        return "\n".join(st.to_text() for st in self.statements) + "\n"

    def __str__(self) -> str:
        return self.to_text()

    def __len__(self) -> int:
        return len(self.statements)

    # -- dataflow --

    @property
    def dataflow(self) -> Dataflow:
        """Def-use and liveness of the statements (see :mod:`pipeline.dataflow`)."""
        flow = self._cache.get("flow")
        if flow is None:
            flow = self._cache["flow"] = Dataflow(self.statements)
        return flow

    @property
    def live_statements(self) -> frozenset[int]:
        """Indices of statements that reach ``update`` now or at a later step."""
        return self.dataflow.live

    @property
    def live_slots(self) -> tuple[str, ...]:
        """State slots whose value can reach ``update`` (now or at a later step)."""
        return self.dataflow.live_slots

    @property
    def slots(self) -> tuple[str, ...]:
        """State slots the program reads or writes, in slot order."""
        slots = self._cache.get("slots")
        if slots is None:
            used = {st.target for st in self.statements}
            used.update(a for st in self.statements for a in st.reads())
            slots = self._cache["slots"] = tuple(s for s in STATE_SLOTS if s in used)
        return slots

    @property
    def reads_lr(self) -> bool:
        """Whether the learning rate it is given can change the update: a live statement
        reads the input ``lr`` (not a value the program wrote to that name)."""
        return "lr" in self.dataflow.reads_at_start(live_only=True)

    def with_lr_scale(self, factor: float) -> Program:
        """The same rule run at learning rate ``lr * factor`` (prepends ``lr = lr * factor``)."""
        if factor == 1.0:
            return self
        return Program((Statement("lr", "mul", ("lr", float(factor))), *self.statements))

    def dead_code_eliminated(self) -> Program:
        """The same optimizer without statements that never reach ``update``."""
        live = self.live_statements
        if len(live) == len(self.statements):
            return self
        return Program(tuple(st for i, st in enumerate(self.statements) if i in live))

    def structural_hash(self) -> str:
        """A hex digest of the dataflow to ``update`` and the live state.

        Equal for programs that compute the same expression graph: variable names (slot
        names too), statement order and dead code are ignored; constants, ops and argument
        order matter. A slot that is read but never written is the constant 0.
        """
        h = self._cache.get("shash")
        if h is None:
            h = self._cache["shash"] = self.dataflow.digest()
        return h

    def __getstate__(self):
        return {"statements": self.statements}

    def __setstate__(self, state):
        object.__setattr__(self, "statements", state["statements"])
        object.__setattr__(self, "_cache", {})
