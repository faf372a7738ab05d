"""Mutation: the paper's program edits, redrawn until the child is new and valid.

Kinds (Chen et al. 2023, plus AutoML-Zero's replace):

* ``INSERT`` a random statement at a random position;
* ``DELETE`` a random statement;
* ``CHANGE_ARG`` change one argument of one statement: to another variable available there,
  an input, or a constant (new constants ~ N(0, 1); an existing constant is multiplied by
  ``2**a``, ``a ~ N(0, 1)``);
* ``REPLACE`` one statement with a random one;
* ``TUNE_CONSTANT`` multiply one existing constant by ``2**a`` (off by default; the
  hyperparameter-only baseline uses it alone).

:func:`mutate` never changes its input and draws only from the generator it is given. It
redraws (at most ``max_redraws`` times) until abstract execution accepts the child and the
child's structural hash differs from the parent's, counting every rejection by reason.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import assert_never

import numpy as np

from ops import OPS
from pipeline.abstract import Rejection, check
from pipeline.program import Program
from pipeline.statement import INPUTS, OUTPUT, STATE_SLOTS, ProgramError, Statement

__all__ = [
    "MutationConfig",
    "MutationKind",
    "MutationResult",
    "mutate",
    "random_program",
    "random_statement",
]


class MutationKind(enum.Enum):
    INSERT = "insert"
    DELETE = "delete"
    CHANGE_ARG = "change_arg"
    REPLACE = "replace"
    TUNE_CONSTANT = "tune_constant"


@dataclass(frozen=True)
class MutationConfig:
    """How to mutate. Probabilities are relative weights per kind (they need not sum to 1).

    Attributes:
        insert, delete, change_arg, replace, tune_constant: weights of the kinds.
        max_len: the longest program a mutation may produce.
        n_slots: how many of ``STATE_SLOTS`` (m, v, state2, state3) a program may use, 0-4.
            The Lion paper used two, capping the memory at AdamW's.
        literal_prob: chance that a new argument is a constant, where the op allows one.
        max_redraws: how many children to draw before giving up on a parent.
        ops: names of the ops a new statement may use; empty means every op in ``OPS``.
        require_lr: reject children whose ``update`` does not depend on ``lr`` (abstract
            execution's ``ignores_lr``). On by default: such a rule ignores the learning
            rate and every schedule it is given; switch it off only to study them.
    """

    insert: float = 0.3
    delete: float = 0.3
    change_arg: float = 0.3
    replace: float = 0.1
    tune_constant: float = 0.0
    max_len: int = 30
    n_slots: int = 2
    literal_prob: float = 0.2
    max_redraws: int = 100
    ops: tuple[str, ...] = ()
    require_lr: bool = True

    def __post_init__(self) -> None:
        weights = self.weights()
        if any(not (p >= 0 and math.isfinite(p)) for _, p in weights):
            raise ValueError(f"mutation weights must be finite and >= 0, got {weights}")
        if sum(p for _, p in weights) <= 0:
            raise ValueError("at least one mutation weight must be > 0")
        if not 0 <= self.n_slots <= len(STATE_SLOTS):
            raise ValueError(f"n_slots must be in [0, {len(STATE_SLOTS)}], got {self.n_slots}")
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        if self.max_redraws < 1:
            raise ValueError(f"max_redraws must be >= 1, got {self.max_redraws}")
        if not 0 <= self.literal_prob <= 1:
            raise ValueError(f"literal_prob must be in [0, 1], got {self.literal_prob}")
        unknown = [name for name in self.ops if name not in OPS]
        if unknown:
            raise ValueError(f"unknown op(s) in ops: {unknown}")

    def weights(self) -> tuple[tuple[MutationKind, float], ...]:
        return (
            (MutationKind.INSERT, self.insert),
            (MutationKind.DELETE, self.delete),
            (MutationKind.CHANGE_ARG, self.change_arg),
            (MutationKind.REPLACE, self.replace),
            (MutationKind.TUNE_CONSTANT, self.tune_constant),
        )

    @property
    def op_names(self) -> tuple[str, ...]:
        return self.ops or tuple(OPS)


@dataclass(frozen=True)
class MutationResult:
    """The outcome of :func:`mutate`.

    ``child`` is the accepted program, or ``None`` when every draw was rejected; then
    ``statements`` and ``rejection`` describe the last draw. ``rejections`` counts the
    reasons of every rejected draw (the accepted one excluded).
    """

    child: Program | None
    kind: MutationKind
    statements: tuple[Statement, ...]
    rejection: Rejection | None
    rejections: Counter = field(default_factory=Counter)


# ---- the pieces -------------------------------------------------------------------------------


def _slots(statements: Sequence[Statement], n_slots: int) -> list[str]:
    used = {a for st in statements for a in st.reads()} | {st.target for st in statements}
    return [s for i, s in enumerate(STATE_SLOTS) if i < n_slots or s in used]


def _readable(statements: Sequence[Statement], i: int, slots: list[str]) -> list[str]:
    """Variables defined before statement ``i``, in a deterministic order."""
    return list(dict.fromkeys([*INPUTS, *slots, *(st.target for st in statements[:i])]))


def _target(rng: np.random.Generator, statements: Sequence[Statement], slots: list[str]) -> str:
    """An existing target, ``update``, an allowed slot, or a fresh temporary."""
    names = list(dict.fromkeys([OUTPUT, *slots, *(st.target for st in statements)]))
    k = int(rng.integers(len(names) + 1))
    if k < len(names):
        return names[k]
    taken = set(names)
    n = 0
    while f"x{n}" in taken:
        n += 1
    return f"x{n}"


def _scale(value: float, rng: np.random.Generator) -> float:
    return float(value * 2.0 ** rng.normal())


def random_statement(
    rng: np.random.Generator, readable: Sequence[str], target: str, config: MutationConfig
) -> Statement:
    """A statement with a random op; each argument a readable variable or a N(0,1) literal."""
    names = config.op_names
    op = OPS[names[int(rng.integers(len(names)))]]
    args: list[str | float] = []
    for ok in op.const_ok:
        if ok and rng.random() < config.literal_prob:
            args.append(float(rng.normal()))
        else:
            args.append(readable[int(rng.integers(len(readable)))])
    if args and all(isinstance(a, float) for a in args):
        args[0] = readable[int(rng.integers(len(readable)))]
    return Statement(target, op.name, tuple(args))


def _change_arg(
    rng: np.random.Generator, statements: list[Statement], slots: list[str], config: MutationConfig
) -> None:
    with_args = [i for i, st in enumerate(statements) if st.args]
    if not with_args:
        return
    i = with_args[int(rng.integers(len(with_args)))]
    st = statements[i]
    j = int(rng.integers(len(st.args)))
    old = st.args[j]
    new: str | float
    if isinstance(old, float) and rng.random() < 0.5:
        new = _scale(old, rng)
    elif OPS[st.op].const_ok[j] and rng.random() < config.literal_prob:
        new = float(rng.normal())
    else:
        pool = [v for v in _readable(statements, i, slots) if v != old]
        new = pool[int(rng.integers(len(pool)))]
    args = list(st.args)
    args[j] = new
    statements[i] = Statement(st.target, st.op, tuple(args))


def _tune_constant(rng: np.random.Generator, statements: list[Statement]) -> None:
    places = [
        (i, j)
        for i, st in enumerate(statements)
        for j, a in enumerate(st.args)
        if isinstance(a, float)
    ]
    if not places:
        return
    i, j = places[int(rng.integers(len(places)))]
    st = statements[i]
    args = list(st.args)
    args[j] = _scale(args[j], rng)
    statements[i] = Statement(st.target, st.op, tuple(args))


def _draw_kind(rng: np.random.Generator, config: MutationConfig) -> MutationKind:
    kinds, weights = zip(*config.weights(), strict=True)
    p = np.asarray(weights, dtype=float)
    return kinds[int(rng.choice(len(kinds), p=p / p.sum()))]


def _apply(
    kind: MutationKind, parent: Program, rng: np.random.Generator, config: MutationConfig
) -> tuple[Statement, ...]:
    """One draw of ``kind`` on ``parent``: the child's statements (maybe invalid)."""
    statements = list(parent.statements)
    slots = _slots(statements, config.n_slots)
    match kind:
        case MutationKind.INSERT:
            i = int(rng.integers(len(statements) + 1))
            target = _target(rng, statements, slots)
            st = random_statement(rng, _readable(statements, i, slots), target, config)
            statements.insert(i, st)
        case MutationKind.DELETE:
            if statements:
                del statements[int(rng.integers(len(statements)))]
        case MutationKind.CHANGE_ARG:
            _change_arg(rng, statements, slots, config)
        case MutationKind.REPLACE:
            if statements:
                i = int(rng.integers(len(statements)))
                target = _target(rng, statements, slots)
                statements[i] = random_statement(
                    rng, _readable(statements, i, slots), target, config
                )
        case MutationKind.TUNE_CONSTANT:
            _tune_constant(rng, statements)
        case _:
            assert_never(kind)
    return tuple(statements)


def _construct(statements: tuple[Statement, ...]) -> Program | None:
    try:
        return Program(statements)
    except ProgramError:  # a safety net: check() accepted it, so this should not happen
        return None


def mutate(parent: Program, rng: np.random.Generator, config: MutationConfig) -> MutationResult:
    """A mutated copy of ``parent`` that abstract execution accepts and whose hash is new."""
    rejections: Counter = Counter()
    parent_hash = parent.structural_hash()
    kind = MutationKind.INSERT
    statements: tuple[Statement, ...] = parent.statements
    reason: Rejection | None = None
    for _ in range(config.max_redraws):
        kind = _draw_kind(rng, config)
        statements = _apply(kind, parent, rng, config)
        reason = check(statements, max_len=config.max_len, n_slots=config.n_slots,
                       require_lr=config.require_lr)
        if reason is None:
            child = _construct(statements)
            if child is None:
                reason = Rejection.INVALID_PROGRAM
            elif child.structural_hash() != parent_hash:
                return MutationResult(child, kind, statements, None, rejections)
            else:
                reason = Rejection.UNCHANGED
        rejections[reason] += 1
    return MutationResult(None, kind, statements, reason, rejections)


# A random program is accepted about once in 50 draws when it must read lr and g (measured:
# 47-85 draws of 3-15 statements; 5 without the lr rule), so it gets this many times the
# mutator's redraws.
RANDOM_REDRAWS = 20


def random_program(
    rng: np.random.Generator, length: int, config: MutationConfig
) -> tuple[Program | None, tuple[Statement, ...], Rejection | None, Counter]:
    """A random program of ``length`` statements whose last one assigns ``update``.

    Redraws until abstract execution accepts it (at most ``config.max_redraws`` x
    ``RANDOM_REDRAWS`` times);
    returns ``(program or None, last statements, last rejection, rejections counted)``.
    """
    rejections: Counter = Counter()
    statements: tuple[Statement, ...] = ()
    reason: Rejection | None = None
    slots = list(STATE_SLOTS[: config.n_slots])
    for _ in range(config.max_redraws * RANDOM_REDRAWS):
        body: list[Statement] = []
        for i in range(length):
            target = OUTPUT if i == length - 1 else _target(rng, body, slots)
            body.append(random_statement(rng, _readable(body, i, slots), target, config))
        statements = tuple(body)
        reason = check(statements, max_len=config.max_len, n_slots=config.n_slots,
                       require_lr=config.require_lr)
        if reason is None:
            program = _construct(statements)
            if program is not None:
                return program, statements, None, rejections
            reason = Rejection.INVALID_PROGRAM
        rejections[reason] += 1
    return None, statements, reason, rejections
