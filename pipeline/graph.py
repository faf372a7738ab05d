"""A program's step as an editable dataflow graph, and back to a program.

Node ``i`` is statement ``i``; each argument is a :data:`~pipeline.dataflow.Ref` (the node
that defined it, an input or slot at step start, or a literal). A :class:`Graph` is built
from the program's :class:`~pipeline.dataflow.Dataflow` and uses the same liveness
(:func:`~pipeline.dataflow.live_nodes`); its edits (replace a node by one of its inputs,
change a node's op and arguments) return new graphs, and :meth:`Graph.to_program` writes the
live nodes back as a :class:`~pipeline.program.Program` with the original variable names
where that is possible. The rewrites themselves are :mod:`pipeline.algebra`'s.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from pipeline.dataflow import Ref, live_nodes
from pipeline.program import Program
from pipeline.statement import INPUTS, OUTPUT, STATE_SLOTS, ProgramError, Statement

__all__ = ["Graph", "Node", "is_literal", "is_node", "same_ref"]


@dataclass(frozen=True)
class Node:
    """``name = op(*args)`` in graph form; ``name`` is the preferred variable name."""

    op: str
    args: tuple[Ref, ...]
    name: str


def same_ref(a: Ref, b: Ref) -> bool:
    """Refs are equal (a node index never equals a literal, although ``0 == 0.0``)."""
    return type(a) is type(b) and a == b


def _map_ref(ref: Ref, old: int, new: Ref) -> Ref:
    return new if same_ref(ref, old) else ref


def is_node(ref: Ref) -> bool:
    return isinstance(ref, int)


def is_literal(ref: Ref) -> bool:
    return isinstance(ref, float)


@dataclass(frozen=True)
class Graph:
    """The dataflow of one step. ``nodes[i]`` is None once node ``i`` has been removed.

    ``outputs`` maps ``update`` and every written slot to the ref of its final value.
    """

    nodes: tuple[Node | None, ...]
    outputs: tuple[tuple[str, Ref], ...]

    @classmethod
    def from_program(cls, program: Program) -> Graph:
        flow = program.dataflow
        nodes = tuple(Node(st.op, deps, st.target)
                      for st, deps in zip(program.statements, flow.deps, strict=True))
        outputs = tuple(
            (name, flow.final[name]) for name in (OUTPUT, *STATE_SLOTS) if name in flow.final
        )
        return cls(nodes, outputs)

    # -- queries --

    @property
    def output_map(self) -> dict[str, Ref]:
        return dict(self.outputs)

    def node(self, ref: Ref, op: str | None = None) -> Node | None:
        """The node ``ref`` points to (with op ``op`` if given), else None."""
        if not is_node(ref) or self.nodes[ref] is None:
            return None
        n = self.nodes[ref]
        return n if op is None or n.op == op else None

    @functools.cached_property
    def _liveness(self) -> tuple[frozenset[int], frozenset[str]]:
        return live_nodes([None if n is None else n.args for n in self.nodes], self.output_map)

    def sinks(self) -> dict[str, Ref]:
        """``update`` and the slots whose end-of-step value a live node reads (next step)."""
        outs, read = self.output_map, self._liveness[1]
        return {name: outs[name] for name in (OUTPUT, *STATE_SLOTS)
                if name in outs and (name == OUTPUT or name in read)}

    def live(self) -> list[int]:
        """Indices of the nodes that reach ``update`` now or at a later step, in order."""
        return sorted(self._liveness[0])

    def readers(self, ref: Ref) -> list[int]:
        """Live nodes that read ``ref``."""
        return [i for i in self.live() if any(same_ref(ref, a) for a in self.nodes[i].args)]

    # -- edits (each returns a new graph) --

    def replace(self, i: int, ref: Ref) -> Graph:
        """Remove node ``i``; every use of its value (outputs too) reads ``ref`` instead."""
        nodes = tuple(
            None if k == i or n is None
            else Node(n.op, tuple(_map_ref(a, i, ref) for a in n.args), n.name)
            for k, n in enumerate(self.nodes)
        )
        outputs = tuple((name, _map_ref(r, i, ref)) for name, r in self.outputs)
        return Graph(nodes, outputs)

    def with_node(self, i: int, op: str, args: tuple[Ref, ...]) -> Graph:
        """Node ``i`` computes ``op(*args)`` instead (its uses are unchanged)."""
        nodes = list(self.nodes)
        nodes[i] = Node(op, tuple(args), self.nodes[i].name)
        return Graph(tuple(nodes), self.outputs)

    def substitute(self, old: str, new: Ref) -> Graph:
        """Every read of the input or step-start slot ``old`` reads ``new`` instead."""
        nodes = tuple(
            None if n is None else Node(n.op, tuple(new if a == old and isinstance(a, str) else a
                                                     for a in n.args), n.name)
            for n in self.nodes
        )
        return Graph(nodes, self.outputs)

    # -- back to text --

    def to_program(self) -> Program | None:
        """The live nodes as a valid Program, or None where that needs a copy statement.

        Nodes keep their order and, where it does not clobber a value still needed, their
        names; the final value of ``update`` and of each needed slot is written to that name.
        """
        sinks = self.sinks()
        targets = _sink_targets(sinks)
        if targets is None:
            return None
        forced, unchanged = targets
        live = self.live()
        last_read = self._last_reads(live, forced)
        taken = set(INPUTS) | set(STATE_SLOTS) | {OUTPUT}
        taken |= {n.name for n in self.nodes if n is not None}
        holds: dict[str, Ref] = {x: x for x in (*INPUTS, *STATE_SLOTS)}
        names: dict[int, str] = {}
        statements: list[Statement] = []

        def can_write(name: str, i: int) -> bool:
            value = holds.get(name)
            if value is not None and last_read.get(value, -1) > i:
                return False  # a later statement (or the next step) still needs it
            if forced.get(i) == name:
                return True
            if name == OUTPUT or name in STATE_SLOTS:
                final = sinks.get(name)
                return is_node(final) and final > i and name not in unchanged
            return True

        for i in live:
            node = self.nodes[i]
            args: list[str | float] = []
            for a in node.args:
                name = a if is_literal(a) else names[a] if is_node(a) else a
                if not is_literal(a) and holds.get(name) != a:
                    return None
                args.append(name)
            name = forced.get(i, node.name)
            if not can_write(name, i):
                if i in forced:
                    return None
                k = 2
                while f"{node.name}{k}" in taken:
                    k += 1
                name = f"{node.name}{k}"
            taken.add(name)
            names[i] = name
            holds[name] = i
            statements.append(Statement(name, node.op, tuple(args)))
        if any(holds.get(s) != (s if s in unchanged else r) for s, r in sinks.items()):
            return None
        try:
            return Program(tuple(statements))
        except ProgramError:
            return None

    def _last_reads(self, live: list[int], forced: dict[int, str]) -> dict[Ref, float]:
        """The last live node that reads each value (inf: a sink, read at the next step)."""
        last_read: dict[Ref, float] = {}
        for i in live:
            for a in self.nodes[i].args:
                if not is_literal(a):
                    last_read[a] = i
        for r in forced:
            last_read[r] = math.inf
        return last_read


def _sink_targets(sinks: dict[str, Ref]) -> tuple[dict[int, str], set[str]] | None:
    """The node each sink's name must be written by, and the slots that keep their (zero)
    value; None where a node would need two names or a sink holds another value."""
    if not is_node(sinks.get(OUTPUT)):
        return None
    forced: dict[int, str] = {}
    unchanged: set[str] = set()
    for s, r in sinks.items():
        if is_node(r):
            if r in forced:
                return None
            forced[r] = s
        elif r == s or (s != OUTPUT and r == 0.0):
            unchanged.add(s)
        else:
            return None
    return forced, unchanged
