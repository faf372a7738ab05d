"""Interval analysis of a program: which guards provably never fire.

Each op declares an interval rule (``Op.interval``). Running the rules over a program bounds
every value; an op whose :class:`~ops.registry.FastPath` condition holds (e.g. a denominator
``sqrt(v) + 1e-7 >= EPS``) runs unguarded with identical results.

By default state slots enter as unknown: an executor may be handed any state (a checkpoint, a
test), so a fast path is exact for every input. An optimizer that owns its state (slots zero at
step 1, written only by the program, as :class:`~pipeline.keras_optimizer.ProgramOptimizer`)
may ask for ``reachable=True``: slot intervals are then iterated from zero to an invariant
across steps (e.g. AdamW's ``v`` stays ``>= 0``), which is exact for every state it can reach.
"""

from __future__ import annotations

import functools
import math

from ops import OPS
from pipeline.program import Program
from pipeline.statement import STATE_SLOTS

__all__ = ["argument_intervals", "fast_statements"]

Interval = tuple[float, float]
ANY: Interval = (-math.inf, math.inf)
_START: dict[str, Interval] = {"w": ANY, "g": ANY, "lr": ANY, "t": (1.0, math.inf)}


_WIDEN_AFTER = 3
_MAX_ROUNDS = 10


def _one_step(program: Program, slots: dict[str, Interval]):
    """Intervals of each statement's arguments, and of the slots at the step's end."""
    env = dict(_START) | slots
    reads: list[list[Interval]] = []
    for st in program.statements:
        op = OPS[st.op]
        args = [env[a] if isinstance(a, str) else (a, a) for a in st.args]
        reads.append(args)
        env[st.target] = op.interval(*args) if op.interval is not None else ANY
    return reads, {s: env[s] for s in slots}


def _hull(a: Interval, b: Interval) -> Interval:
    return (min(a[0], b[0]), max(a[1], b[1]))


def argument_intervals(program: Program, reachable: bool = False) -> list[list[Interval]]:
    """For each statement, an interval containing each argument's value as it is read.

    ``reachable``: only for states reachable from zero slots (see the module doc).
    """
    if not reachable:
        return _one_step(program, {s: ANY for s in STATE_SLOTS})[0]
    slots: dict[str, Interval] = {s: (0.0, 0.0) for s in STATE_SLOTS}
    for rounds in range(_MAX_ROUNDS):
        reads, final = _one_step(program, slots)
        grown = {s: _hull(slots[s], final[s]) for s in slots}
        if grown == slots:
            return reads  # invariant: 0 is inside and one step maps the intervals into them
        if rounds >= _WIDEN_AFTER:  # widen what still grows, so the iteration ends
            grown = {
                s: (-math.inf if v[0] < slots[s][0] else v[0],
                    math.inf if v[1] > slots[s][1] else v[1])
                for s, v in grown.items()
            }
        slots = grown
    return _one_step(program, {s: ANY for s in STATE_SLOTS})[0]


@functools.lru_cache(maxsize=4096)
def fast_statements(program: Program, reachable: bool = False) -> frozenset[int]:
    """Statements whose op may run its fast path: its guard provably never fires."""
    out = set()
    reads = argument_intervals(program, reachable)
    for i, (st, args) in enumerate(zip(program.statements, reads, strict=True)):
        fast = OPS[st.op].fast
        if fast is not None and args[fast.arg][0] >= fast.at_least:
            out.add(i)
    return frozenset(out)
