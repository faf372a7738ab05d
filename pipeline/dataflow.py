"""Def-use and liveness of a program, and its canonical (structural) hash.

One step of a program in single-assignment form: each argument of statement ``i`` is a
:data:`Ref` - the index of the statement that defined it, the name of an input or of a state
slot as it stands at the start of the step, or a literal. :func:`live_nodes` is the one
liveness analysis: the statements that reach ``update`` now or, through the state slots, at a
later step. :class:`~pipeline.program.Program` (dead code, the structural hash) and
:class:`~pipeline.graph.Graph` (the rewrites) both use it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from pipeline.statement import OUTPUT, STATE_SLOTS, Statement, format_number

__all__ = ["Dataflow", "Ref", "def_use", "live_nodes"]

Ref = int | str | float
"""int: the node that defined the value; str: an input or slot at step start; float: literal."""


def def_use(statements: Sequence[Statement]) -> tuple[list[tuple[Ref, ...]], dict[str, int]]:
    """Each statement's arguments as refs, and each name's last writer."""
    last: dict[str, int] = {}
    deps: list[tuple[Ref, ...]] = []
    for st in statements:
        deps.append(tuple(a if isinstance(a, float) else last.get(a, a) for a in st.args))
        last[st.target] = len(deps) - 1
    return deps, last


def live_nodes(deps: Sequence[tuple[Ref, ...] | None], final: Mapping[str, Ref]
               ) -> tuple[frozenset[int], frozenset[str]]:
    """The nodes that reach ``update`` now or at a later step, and the slots they read.

    ``deps[i]`` is node ``i``'s arguments (None: no node there); ``final`` maps ``update``
    and the written slots to the ref of their end-of-step value. A slot read by a live node
    makes its final value live (to a fixed point).
    """
    live: set[int] = set()
    read_slots: set[str] = set()
    stack = [final[OUTPUT]] if OUTPUT in final else []
    while stack:
        i = stack.pop()
        if not isinstance(i, int) or i in live or deps[i] is None:
            continue
        live.add(i)
        for d in deps[i]:
            if isinstance(d, int):
                stack.append(d)
            elif isinstance(d, str) and d in STATE_SLOTS and d not in read_slots:
                read_slots.add(d)
                if d in final:
                    stack.append(final[d])
    return frozenset(live), frozenset(read_slots)


class Dataflow:
    """A program's def-use, liveness across steps and canonical hash."""

    def __init__(self, statements: Sequence[Statement]):
        self.statements = statements
        self.deps, self.final = def_use(statements)  # final: name -> index of its last writer
        self.live, read_slots = live_nodes(self.deps, self.final)
        self.live_slots = tuple(s for s in STATE_SLOTS if s in read_slots)

    def reads_at_start(self, live_only: bool = False) -> frozenset[str]:
        """The names some statement (``live_only``: some live one) reads as they stand at the
        start of the step: inputs, and slots read before the step writes them."""
        return frozenset(d for i, refs in enumerate(self.deps) if not live_only or i in self.live
                         for d in refs if isinstance(d, str))

    def _slot_order(self) -> list[str]:
        """Written slots in first-use order of a DFS from ``update`` (argument order)."""
        order: list[str] = []
        seen_slots: set[str] = set()
        visited: set[int] = set()
        roots = [self.final[OUTPUT]]
        k = 0
        while True:
            stack = list(reversed(roots))
            while stack:
                i = stack.pop()
                if i in visited:
                    continue
                visited.add(i)
                for d in reversed(self.deps[i]):
                    if isinstance(d, int):
                        stack.append(d)
                # slots are numbered in argument order, left to right
                for d in self.deps[i]:
                    if isinstance(d, str) and d in self.final and d in STATE_SLOTS:
                        if d not in seen_slots:
                            seen_slots.add(d)
                            order.append(d)
            if k >= len(order):
                return order
            roots = [self.final[order[k]]]
            k += 1

    def digest(self) -> str:
        """A hex digest of the dataflow to ``update`` and the live state (see
        :meth:`~pipeline.program.Program.structural_hash`)."""
        order = self._slot_order()
        slot_ids = {s: n for n, s in enumerate(order)}
        memo: dict[int, str] = {}

        def leaf(d: Ref) -> str:
            if isinstance(d, float):
                return "c" + format_number(d)
            if isinstance(d, int):
                return memo[d]
            if d in STATE_SLOTS:
                return f"s{slot_ids[d]}" if d in slot_ids else "c0.0"  # never written: zero
            return "i" + d

        # deps point to earlier statements, so index order is a topological order.
        for i in sorted(self.live):
            st = self.statements[i]
            parts = ",".join(leaf(d) for d in self.deps[i])
            memo[i] = hashlib.sha256(f"{st.op}({parts})".encode()).hexdigest()[:32]
        outputs = [leaf(self.final[OUTPUT])] + [leaf(self.final[s]) for s in order]
        return hashlib.sha256("|".join(outputs).encode()).hexdigest()
