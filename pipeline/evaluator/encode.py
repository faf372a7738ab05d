"""Programs as arrays: a batch of programs encoded for the register machine (``machine.py``).

* Programs are data, not code: dead code is dropped, registers 0-8 hold ``w g lr t m v
  state2 state3 update`` and each other name a program assigns gets a register of its own,
  and the batch is encoded as integer arrays (op codes, argument and target rows) over a flat
  register file ``[registers x P, n_params]``. At each position (statement) the members are
  sorted by op (host side, once per segment), so the machine runs each op once on just the
  rows that use it.
* Step constants are hoisted: a live statement whose value depends only on ``lr``, ``t``
  and literals (AdamW's bias correction, ``lr * 0.001``) is the same for every parameter,
  so it is not a position of the machine. The NumPy reference computes its value for every
  step of a segment on the host (vectorized over ``t``, cached per distinct sub-program);
  members with the same values share one row, as all share ``lr`` and ``t``, and each step
  one scatter loads the distinct rows. AdamW's bias correction and ``lr * wd`` are 8 of its
  17 statements (two of them ``power``): hoisting them trains a batch of AdamW mutants
  1.5x faster (measured side by side, 1024 members, smoke proxy).
* Literals are rows too: each distinct literal value of a batch (and each hoisted value
  that is the same at every step, ``lr * wd``) gets one row after the registers, loaded
  once per segment, and a statement reads it like any register. No per-op select between
  a register and a literal runs in the step loop; that select cost a fifth of the step time
  of a mixed batch (measured by removing it, 1024 members, smoke proxy).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ops import OPS, Op, Shape
from pipeline.execute import step_constant_statements
from pipeline.program import Program
from pipeline.statement import INPUTS, OUTPUT, STATE_SLOTS, Statement
from pipeline.stepwise import step_table

__all__ = [
    "Encoded",
    "encode",
    "n_registers",
    "positions_needed",
    "registers_needed",
]

# Register numbering: inputs, slots, ``update``, then one register per other name a program
# assigns. Straight-line code reads the latest value of a name, so a register per name is
# exact; writes to an input name go to a fresh register (inputs are refreshed each step),
# and so does a write to a name bound to a shared row of hoisted constants (see encode).
REGISTERS: tuple[str, ...] = (*INPUTS, *STATE_SLOTS, OUTPUT)
N_FIXED = len(REGISTERS)
REG_W, REG_G, REG_LR, REG_T, REG_UPDATE = 0, 1, 2, 3, N_FIXED - 1
REG_SLOTS = tuple(range(len(INPUTS), len(INPUTS) + len(STATE_SLOTS)))
SHARED = frozenset({REG_LR, REG_T})  # one row, member 0's, read by every member
# Ops sorted by arity, highest first: the rows that need argument j form a prefix.
OP_ORDER: tuple[Op, ...] = tuple(sorted(OPS.values(), key=lambda op: -op.arity))
OP_CODE = {op.name: k for k, op in enumerate(OP_ORDER)}
NOP = len(OP_ORDER)
MAX_ARITY = max(op.arity for op in OP_ORDER)


@dataclass(frozen=True)
class Encoded:
    """A batch of programs as arrays; at each position the members are sorted by op code.

    Register ``r`` of member ``p`` is row ``r * capacity + p`` of the flat register file;
    ``lr`` and ``t`` are the same for every member, so every member reads member 0's row.
    The file has ``register_rows`` rows: ``n_fresh`` registers beyond the fixed ones, then
    one row per value in ``lit_vals``.
    """

    capacity: int  # rows per register (the stride)
    n_fresh: int  # registers beyond the fixed ones
    const_rows: np.ndarray  # [K] flat register rows of the hoisted step constants
    const_vals: np.ndarray  # [steps, K] their values at each step of the segment
    lit_rows: np.ndarray  # [J] flat register rows of values fixed over the segment
    lit_vals: np.ndarray  # [J] their values (literals, hoisted values the same every step)
    gather_idx: np.ndarray  # [L, A, P] flat register row of argument j, in sorted order
    counts: np.ndarray  # [L, n_ops] members running each op
    n_args: np.ndarray  # [L, A] members whose op takes argument j
    n_rows: np.ndarray  # [L] members running some op at this position
    scatter_idx: np.ndarray  # [L, P] flat register row of the target, in sorted order
    scalar_arg: np.ndarray  # [L, A, P] argument j is a scalar (for reductions)

    @property
    def register_rows(self) -> int:
        return n_registers(self.n_fresh) * self.capacity + len(self.lit_rows)

    def tensors(self) -> dict[str, np.ndarray]:
        """What the compiled step loop reads (see ``Trainer``'s input signature)."""
        out = {k: v for k, v in vars(self).items() if k != "n_fresh"}
        out["capacity"] = np.int32(self.capacity)
        return out


def n_registers(n_fresh: int) -> int:
    """Registers of a machine whose programs assign at most ``n_fresh`` fresh registers."""
    return N_FIXED + n_fresh


def registers_needed(program: Program) -> int:
    """Fresh registers ``program`` may take in :func:`encode`: at most one per live
    statement (its target, or the row of its hoisted values)."""
    return len(program.dead_code_eliminated())


@dataclass(frozen=True)
class _Layout:
    """How :func:`encode` lays out one program.

    ``constants``: its step constants (:func:`~pipeline.execute.step_constant_statements`)
    in order, the columns of its constant table. ``hoisted``: those the machine loads
    instead of running, all but the ones that write a state slot or ``update`` (registers
    with a meaning beyond the step).
    """

    live: Program  # dead code eliminated
    constants: tuple[int, ...]
    hoisted: frozenset[int]

    @property
    def positions(self) -> int:
        return len(self.live) - len(self.hoisted)


def _layout(program: Program) -> _Layout:
    live = program.dead_code_eliminated()
    constants = tuple(sorted(step_constant_statements(live)))
    keep = frozenset((*STATE_SLOTS, OUTPUT))
    return _Layout(live, constants,
                   frozenset(i for i in constants if live.statements[i].target not in keep))


def positions_needed(program: Program) -> int:
    """Positions of the machine ``program`` occupies (its live statements not hoisted)."""
    return _layout(program).positions


# Bounded small: a table is ``steps x columns`` floats (20k steps x 8 = 640 KB on a 100x
# task), and recomputing one costs tens of microseconds.
@functools.lru_cache(maxsize=256)
def _constant_table(statements: tuple[Statement, ...], lr: float, t0: int, t1: int
                    ) -> np.ndarray:
    """``[t1 - t0, len(statements)]``: the values of a program's step-constant
    ``statements`` (in order) at steps ``t0 + 1 .. t1``, computed as the NumPy reference
    computes them (float32 after every op), vectorized over the steps (:mod:`pipeline.stepwise`)."""
    table = step_table(statements, np.arange(t0 + 1, t1 + 1, dtype=np.float32), lr)
    table.setflags(write=False)
    return table


class _Registers:
    """One member's register allocator: the fixed registers by name, then fresh ones in
    order, at most ``limit`` of them."""

    def __init__(self, limit: int):
        self.limit = limit
        self.next = N_FIXED

    def fresh(self) -> int:
        if self.next - N_FIXED >= self.limit:
            raise ValueError(f"program needs more than {self.limit} fresh registers")
        self.next += 1
        return self.next - 1


class _SharedRows:
    """The batch's rows that members share by value: hoisted step constants (each distinct
    sequence of values in the register of the first member that needs it) and the values
    fixed over the segment (one row each, after every member's registers, from ``base``)."""

    def __init__(self, base: int):
        self.base = base
        self.const_rows: list[int] = []
        self.const_vals: list[np.ndarray] = []
        self.lit_rows: list[int] = []
        self.lit_vals: list[np.float32] = []
        self._const_home: dict[bytes, int] = {}
        self._lit_home: dict[bytes, int] = {}

    def literal(self, value: np.float32) -> int:
        """The batch's one row holding ``value``."""
        key = value.tobytes()
        if key not in self._lit_home:
            self._lit_home[key] = self.base + len(self.lit_rows)
            self.lit_rows.append(self._lit_home[key])
            self.lit_vals.append(value)
        return self._lit_home[key]

    def hoisted(self, values: np.ndarray, registers: _Registers, member: int, cap: int) -> int:
        """The row holding a hoisted statement's ``values`` (one per step): a literal row if
        they are all one value, else a row shared by every member with the same values (a
        fresh register of ``member``'s if it is the first)."""
        bits = values.view(np.uint32)
        if bits.size and (bits == bits[0]).all():  # one value: loaded once
            return self.literal(values[0])
        key = values.tobytes()
        if key not in self._const_home:
            self._const_home[key] = registers.fresh() * cap + member
            self.const_rows.append(self._const_home[key])
            self.const_vals.append(values)
        return self._const_home[key]


@dataclass
class _Arrays:
    """The arrays ``encode`` fills before sorting: ``[P, length, ...]`` for the batch, or
    ``[length, ...]`` for one member (:meth:`member`)."""

    codes: np.ndarray  # op code at each position (NOP past the program's end)
    src: np.ndarray  # flat register row of each argument
    dst: np.ndarray  # flat register row of the target
    scalar_arg: np.ndarray  # the argument is a scalar in the reference executor

    def member(self, p: int) -> _Arrays:
        """Member ``p``'s rows (views: writing them fills the batch's arrays)."""
        return _Arrays(self.codes[p], self.src[p], self.dst[p], self.scalar_arg[p])


def _encode_member(p: int, layout: _Layout, out: _Arrays, shared: _SharedRows,
                   registers: _Registers, cap: int, lr: float, steps: tuple[int, int]) -> None:
    """Lay out member ``p``'s live statements: hoisted ones bind their target to a shared
    row, the others take the next position of ``out``."""
    live, hoisted = layout.live, layout.hoisted
    column = {k: c for c, k in enumerate(layout.constants)}
    table = (_constant_table(tuple(live.statements[k] for k in layout.constants),
                             float(lr), *steps) if hoisted else None)
    # A name is bound to a register of this member's (``reg``) or, after a hoisted
    # statement, to the flat row holding its values (``row_of``), which members with the
    # same values share, as all share ``lr`` and ``t``.
    reg: dict[str, int] = {name: r for r, name in enumerate(REGISTERS)}
    row_of: dict[str, int] = {}
    # Abstract shapes: registers hold full tensors, but a reduction of values that are
    # scalars in the reference executor must reduce over one element, not a broadcast.
    scalar = {name: name in ("lr", "t") for name in REGISTERS}
    i = 0  # position
    for k, st in enumerate(live.statements):
        if k in hoisted:
            scalar[st.target] = True
            reg.pop(st.target, None)
            row_of[st.target] = shared.hoisted(table[:, column[k]], registers, p, cap)
            continue
        out.codes[i] = OP_CODE[st.op]
        op = OPS[st.op]
        for j, a in enumerate(st.args):
            out.scalar_arg[i, j] = isinstance(a, float) or scalar[a]
            if isinstance(a, float):
                out.src[i, j] = shared.literal(np.float32(a))
            elif a in row_of:
                out.src[i, j] = row_of[a]
            else:
                out.src[i, j] = reg[a] * cap + (0 if reg[a] in SHARED else p)
        # A name keeps its register, except an input's (refreshed each step) and a name
        # that was bound to a shared row (other members read that row).
        row_of.pop(st.target, None)
        if reg.get(st.target, 0) < len(INPUTS):
            reg[st.target] = registers.fresh()
        out.dst[i] = reg[st.target] * cap + p
        scalar[st.target] = (op.arity == 0 or op.shape is Shape.REDUCE
                             or all(scalar[a] for a in st.reads()))
        i += 1


def encode(programs: Sequence[Program], max_len: int | None = None,
           capacity: int | None = None, *, lr: float, steps: tuple[int, int],
           n_fresh: int | None = None) -> Encoded:
    """Encode the live statements of ``programs`` for a register machine of ``max_len``
    (default: the most :func:`positions_needed`) positions over a flat register file of
    ``capacity`` (default: ``len(programs)``) rows per register and ``n_fresh`` (default:
    the most :func:`registers_needed`) registers beyond the fixed ones, for the steps
    ``steps[0] + 1 .. steps[1]`` at learning rate ``lr`` (the values of the hoisted step
    constants)."""
    n = len(programs)
    layouts = [_layout(p) for p in programs]
    length = (max((lay.positions for lay in layouts), default=0) if max_len is None
              else max_len)
    cap = n if capacity is None else capacity
    fresh_max = (max((len(lay.live) for lay in layouts), default=0) if n_fresh is None
                 else n_fresh)
    if cap < n:
        raise ValueError(f"{n} programs do not fit a register file of capacity {cap}")
    out = _Arrays(codes=np.full((n, length), NOP, np.int32),
                  src=np.zeros((n, length, MAX_ARITY), np.int64),
                  dst=np.zeros((n, length), np.int64),
                  scalar_arg=np.zeros((n, length, MAX_ARITY), bool))
    shared = _SharedRows(base=n_registers(fresh_max) * cap)
    for p, layout in enumerate(layouts):
        if layout.positions > length:
            raise ValueError(f"program needs {layout.positions} positions; max_len is {length}")
        _encode_member(p, layout, out.member(p), shared, _Registers(fresh_max), cap, lr, steps)
    if shared.base + len(shared.lit_rows) >= 2**31:
        raise ValueError(f"register file of {n_registers(fresh_max)} x {cap} rows and "
                         f"{len(shared.lit_rows)} literals is too large")
    return _sorted_by_op(out, shared, cap, fresh_max, steps[1] - steps[0])


def _sorted_by_op(out: _Arrays, shared: _SharedRows, cap: int, fresh_max: int,
                  n_steps: int) -> Encoded:
    """The batch's arrays with the members sorted by op code at each position."""
    length = out.codes.shape[1]
    order = np.argsort(out.codes, axis=0, kind="stable")  # [P, L]: members sorted per position
    counts = np.zeros((length, NOP), np.int64)
    for i in range(length):
        counts[i] = np.bincount(out.codes[:, i], minlength=NOP + 1)[:NOP]
    arity = np.array([op.arity for op in OP_ORDER])
    n_args = np.stack([counts[:, arity > j].sum(1) for j in range(MAX_ARITY)], axis=1)

    def by_order(a: np.ndarray) -> np.ndarray:  # [P, L, ...] -> sorted rows, [L, ..., P]
        a = np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=0)
        return np.moveaxis(a, 0, -1)

    return Encoded(
        capacity=cap,
        n_fresh=fresh_max,
        const_rows=np.asarray(shared.const_rows, np.int32),
        const_vals=(np.stack(shared.const_vals, axis=1) if shared.const_vals
                    else np.zeros((n_steps, 0), np.float32)),
        lit_rows=np.asarray(shared.lit_rows, np.int32),
        lit_vals=np.asarray(shared.lit_vals, np.float32),
        gather_idx=by_order(out.src).astype(np.int32),
        counts=counts.astype(np.int32),
        n_args=n_args.astype(np.int32),
        n_rows=counts.sum(1).astype(np.int32),
        scatter_idx=by_order(out.dst).astype(np.int32),
        scalar_arg=by_order(out.scalar_arg),
    )
