"""Interval analysis of a program: which guards provably never fire.

Each op declares an interval rule (``Op.interval``). Running the rules over a program bounds
every value; an op whose :class:`~ops.registry.FastPath` condition holds (e.g. a denominator
``sqrt(v) + 1e-7 >= EPS``) runs unguarded with identical results. State slots enter as
unknown: an executor may be handed any state (a checkpoint, a test), so the analysis assumes
nothing about it, and a fast path is exact for every input the executor accepts.
"""

from __future__ import annotations

import functools
import math

from ops import OPS
from pipeline.program import STATE_SLOTS, Program

__all__ = ["argument_intervals", "fast_statements"]

Interval = tuple[float, float]
ANY: Interval = (-math.inf, math.inf)
_START: dict[str, Interval] = {"w": ANY, "g": ANY, "lr": ANY, "t": (1.0, math.inf)} | {
    s: ANY for s in STATE_SLOTS
}


def argument_intervals(program: Program) -> list[list[Interval]]:
    """For each statement, an interval containing each argument's value as it is read."""
    env = dict(_START)
    reads: list[list[Interval]] = []
    for st in program.statements:
        op = OPS[st.op]
        args = [env[a] if isinstance(a, str) else (a, a) for a in st.args]
        reads.append(args)
        env[st.target] = op.interval(*args) if op.interval is not None else ANY
    return reads


@functools.lru_cache(maxsize=4096)
def fast_statements(program: Program) -> frozenset[int]:
    """Statements whose op may run its fast path: its guard provably never fires."""
    out = set()
    reads = argument_intervals(program)
    for i, (st, args) in enumerate(zip(program.statements, reads, strict=True)):
        fast = OPS[st.op].fast
        if fast is not None and args[fast.arg][0] >= fast.at_least:
            out.add(i)
    return frozenset(out)
