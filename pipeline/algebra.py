"""Algebraic rewrites of programs, from one explicit rule table.

A program is viewed as a dataflow :class:`Graph`: node ``i`` is statement ``i``, and each
argument is a :data:`Ref` - the index of the node that defined it, the name of an input or of
a state slot as it stands at the start of the step, or a literal. Rewriting happens on the
graph (replace a node by one of its inputs, or change its op and arguments); the graph is then
written back as a :class:`Program` with the original variable names where that is possible.

Each :class:`Rule` in :data:`RULES` has a name, a matcher that looks at one node and the nodes
that define its arguments, and a rewrite. All rules but ``absorb_lr_scale`` keep the step's
behaviour (up to float32 rounding and the division guard ``EPS``); ``absorb_lr_scale`` scales
the update by a positive constant, which a learning rate ``lr * lr_scale`` undoes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from ops import OPS
from pipeline.program import INPUTS, OUTPUT, STATE_SLOTS, Program, ProgramError, Statement

__all__ = [
    "CONSTANT_RULES",
    "Graph",
    "Node",
    "Ref",
    "Rewrite",
    "Rule",
    "RULES",
    "RULES_BY_NAME",
    "normalize_constants",
    "rewrites",
]

Ref = int | str | float
"""int: the node that defined the value; str: an input or slot at step start; float: literal."""

_COMMUTATIVE = frozenset({"add", "mul", "max", "min"})


@dataclass(frozen=True)
class Node:
    """``name = op(*args)`` in graph form; ``name`` is the preferred variable name."""

    op: str
    args: tuple[Ref, ...]
    name: str


def _same(a: Ref, b: Ref) -> bool:
    """Refs are equal (a node index never equals a literal, although ``0 == 0.0``)."""
    return type(a) is type(b) and a == b


def _map_ref(ref: Ref, old: int, new: Ref) -> Ref:
    return new if _same(ref, old) else ref


def _is_node(ref: Ref) -> bool:
    return isinstance(ref, int)


def _is_lit(ref: Ref) -> bool:
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
        last: dict[str, int] = {}
        nodes: list[Node | None] = []
        for st in program.statements:
            args = tuple(a if isinstance(a, float) else last.get(a, a) for a in st.args)
            nodes.append(Node(st.op, args, st.target))
            last[st.target] = len(nodes) - 1
        outputs = tuple(
            (name, last[name]) for name in (OUTPUT, *STATE_SLOTS) if name in last
        )
        return cls(tuple(nodes), outputs)

    # -- queries --

    @property
    def output_map(self) -> dict[str, Ref]:
        return dict(self.outputs)

    def node(self, ref: Ref, op: str | None = None) -> Node | None:
        """The node ``ref`` points to (with op ``op`` if given), else None."""
        if not _is_node(ref) or self.nodes[ref] is None:
            return None
        n = self.nodes[ref]
        return n if op is None or n.op == op else None

    def sinks(self) -> dict[str, Ref]:
        """``update`` and the slots whose end-of-step value a live node reads (next step)."""
        outs = self.output_map
        sinks: dict[str, Ref] = {}
        if OUTPUT in outs:
            sinks[OUTPUT] = outs[OUTPUT]
        while True:
            read = {a for i in self._reach(sinks.values()) for a in self.nodes[i].args}
            new = {s: outs[s] for s in STATE_SLOTS if s in read and s in outs and s not in sinks}
            if not new:
                return sinks
            sinks.update(new)

    def live(self) -> list[int]:
        """Indices of the nodes that reach ``update`` now or at a later step, in order."""
        return sorted(self._reach(self.sinks().values()))

    def _reach(self, roots) -> set[int]:
        seen: set[int] = set()
        stack = [r for r in roots if _is_node(r)]
        while stack:
            i = stack.pop()
            if i in seen or self.nodes[i] is None:
                continue
            seen.add(i)
            stack.extend(a for a in self.nodes[i].args if _is_node(a))
        return seen

    def readers(self, ref: Ref) -> list[int]:
        """Live nodes that read ``ref``."""
        return [i for i in self.live() if any(_same(ref, a) for a in self.nodes[i].args)]

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
        if not _is_node(sinks.get(OUTPUT)):
            return None
        forced: dict[int, str] = {}
        unchanged: set[str] = set()  # slots that keep their (zero) value
        for s, r in sinks.items():
            if _is_node(r):
                if r in forced:
                    return None
                forced[r] = s
            elif r == s or (s != OUTPUT and r == 0.0):
                unchanged.add(s)
            else:
                return None
        live = self.live()
        last_read: dict[Ref, float] = {}
        for i in live:
            for a in self.nodes[i].args:
                if not _is_lit(a):
                    last_read[a] = i
        for r in forced:
            last_read[r] = math.inf
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
                return _is_node(final) and final > i and name not in unchanged
            return True

        for i in live:
            node = self.nodes[i]
            args: list[str | float] = []
            for a in node.args:
                if _is_lit(a):
                    args.append(a)
                    continue
                name = names[a] if _is_node(a) else a
                if holds.get(name) != a:
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
        for s, r in sinks.items():
            if holds.get(s) != (s if s in unchanged else r):
                return None
        try:
            return Program(tuple(statements))
        except ProgramError:
            return None


# ---- the rules ---------------------------------------------------------------------------

Match = dict
"""What a matcher found: the refs a rewrite needs (and ``lr_scale`` for a scaling rule)."""


@dataclass(frozen=True)
class Rule:
    """One algebraic rewrite: ``match(graph, i)`` looks at node ``i`` and its defining nodes."""

    name: str
    doc: str
    match: Callable[[Graph, int], Match | None]
    rewrite: Callable[[Graph, int, Match], Graph]
    exact: bool = True  # False: the update is scaled by 1 / match["lr_scale"]


def _operands(node: Node) -> Iterator[tuple[Ref, Ref]]:
    """``(a, b)`` and, for a commutative op, ``(b, a)``."""
    a, b = node.args
    yield a, b
    if node.op in _COMMUTATIVE:
        yield b, a


def _binary_with(g: Graph, i: int, op: str, literal: float) -> Match | None:
    """Node ``i`` is ``op(x, literal)`` (either order if commutative) with ``x`` not a literal."""
    n = g.node(i, op)
    if n is None:
        return None
    for x, c in _operands(n):
        if c == literal and _is_lit(c) and not _is_lit(x):
            return {"x": x}
    return None


def _identity(op: str, literal: float) -> tuple[Callable, Callable]:
    return (lambda g, i: _binary_with(g, i, op, literal)), (lambda g, i, m: g.replace(i, m["x"]))


def _fold_match(g: Graph, i: int) -> Match | None:
    n = g.node(i)
    if n is None or not all(_is_lit(a) for a in n.args):
        return None
    op = OPS[n.op]
    args = [np.float32(a) for a in n.args]
    with np.errstate(all="ignore"):
        value = op.np_fn(*args, axis=None) if op.axis_arg else op.np_fn(*args)
    value = float(np.float32(value))
    return {"value": value} if math.isfinite(value) else None


def _fold_rewrite(g: Graph, i: int, m: Match) -> Graph:
    """Replace node ``i`` by its value, then fold every node that became all-literal."""
    g = g.replace(i, m["value"])
    while True:
        for k in g.live():
            found = _fold_match(g, k)
            if found is not None:
                g = g.replace(k, found["value"])
                break
        else:
            return g


# Every step count that float32 ``t`` holds exactly, checked in chunks.
_T_LAST = 2**24
_T_CHUNK = 2**18
_T_MAX_NODES = 8  # bounds the check; a larger one folds once its first constant part has

_TExpr = tuple
"""A function of ``t`` alone as a DAG in evaluation order: entry ``k`` is ``(op, *args)``, an
argument is ``("t",)``, ``("lit", c)`` or ``("node", j)`` for an earlier entry ``j``."""


def _t_expression(g: Graph, ref: Ref) -> _TExpr | None:
    """``ref`` as a function of literals and ``t``; None if it reads anything else (or is
    larger than ``_T_MAX_NODES``). Shared subexpressions appear once."""
    entries: list[tuple] = []
    index: dict[int, int] = {}

    def visit(r: Ref, depth: int):
        if _is_lit(r):
            return ("lit", r)
        if r == "t":
            return ("t",)
        if r in index:
            return ("node", index[r])
        n = g.node(r)
        if n is None or OPS[n.op].axis_arg or depth == _T_MAX_NODES:
            return None  # another input or slot; a reduction; too large (a path is no
        args = []        # longer than the nodes it passes, so the recursion stays shallow)
        for a in n.args:
            arg = visit(a, depth + 1)
            if arg is None:
                return None
            args.append(arg)
        if len(entries) == _T_MAX_NODES:
            return None  # too large
        entries.append((n.op, *args))
        index[r] = len(entries) - 1
        return ("node", index[r])

    return None if visit(ref, 0) is None else tuple(entries)


def _eval_t(expr: _TExpr, t: np.ndarray) -> np.ndarray:
    """The last entry of ``expr`` at the steps ``t``, as the NumPy reference computes it
    (float32 after every op)."""
    values: list[np.ndarray] = []
    with np.errstate(all="ignore"):
        for op, *args in expr:
            xs = [t if a[0] == "t" else a[1] if a[0] == "lit" else values[a[1]] for a in args]
            values.append(np.broadcast_to(np.asarray(OPS[op].np_fn(*xs), np.float32), t.shape))
    return values[-1]


def _same_bits(x: np.ndarray, value: np.float32) -> bool:
    return bool(np.all(x.view(np.int32) == np.asarray(value, np.float32).view(np.int32)))


@functools.lru_cache(maxsize=1024)
def _constant_over_steps(expr: _TExpr) -> float | None:
    """The value of ``expr`` if it is the same float32 at every step ``t = 1 .. 2**24``
    (checked exhaustively; a cheap sample first), else None."""
    probe = np.array([1, 2, 3, 10, 1000, 123457, _T_LAST], np.float32)
    first = _eval_t(expr, probe)[0]
    if not np.isfinite(first) or not _same_bits(_eval_t(expr, probe), first):
        return None
    for lo in range(1, _T_LAST + 1, _T_CHUNK):
        t = np.arange(lo, min(lo + _T_CHUNK, _T_LAST + 1), dtype=np.float32)
        if not _same_bits(_eval_t(expr, t), first):
            return None
    return float(first)


def _t_constant(g: Graph, ref: Ref) -> float | None:
    expr = _t_expression(g, ref)
    return None if expr is None else _constant_over_steps(expr)


def _step_constant_match(g: Graph, i: int) -> Match | None:
    """Node ``i`` reads ``t`` (and only literals otherwise) yet has one value at every step.

    Only the first such node on a path matches: one whose argument is such a node becomes a
    literal function of literals once that one is folded (the fold cascades downstream).
    """
    n = g.node(i)
    if n is None or all(_is_lit(a) for a in n.args):
        return None  # fold_constants' case
    if any(_is_node(a) and _t_constant(g, a) is not None for a in n.args):
        return None
    value = _t_constant(g, i)
    return None if value is None else {"value": value}


def _mul_zero_match(g: Graph, i: int) -> Match | None:
    n = g.node(i, "mul")
    if n is None:
        return None
    return {} if any(_is_lit(c) and c == 0.0 and not _is_lit(x) for x, c in _operands(n)) else None


def _zero_minus_match(g: Graph, i: int) -> Match | None:
    n = g.node(i, "sub")
    if n is None or n.args[0] != 0.0 or not _is_lit(n.args[0]) or _is_lit(n.args[1]):
        return None
    return {"x": n.args[1]}


def _double_negation_match(g: Graph, i: int) -> Match | None:
    n = g.node(i, "negative")
    inner = g.node(n.args[0], "negative") if n else None
    return {"x": inner.args[0]} if inner else None


def _idempotent_match(g: Graph, i: int) -> Match | None:
    n = g.node(i)
    if n is None or n.op not in ("sign", "abs"):
        return None
    inner = g.node(n.args[0], n.op)
    return {"x": n.args[0]} if inner else None


def _sqrt_square_match(g: Graph, i: int) -> Match | None:
    n = g.node(i, "sqrt")
    inner = g.node(n.args[0], "square") if n else None
    return {"x": inner.args[0]} if inner else None


def _div_abs_match(g: Graph, i: int) -> Match | None:
    n = g.node(i, "div")
    if n is None:
        return None
    den = g.node(n.args[1], "abs")
    ok = den is not None and _same(den.args[0], n.args[0]) and not _is_lit(n.args[0])
    return {"x": n.args[0]} if ok else None


def _div_sqrt_square_match(g: Graph, i: int) -> Match | None:
    n = g.node(i, "div")
    if n is None:
        return None
    root = g.node(n.args[1], "sqrt")
    sq = g.node(root.args[0], "square") if root else None
    ok = sq is not None and _same(sq.args[0], n.args[0]) and not _is_lit(n.args[0])
    return {"x": n.args[0]} if ok else None


def _sign_scale_match(g: Graph, i: int) -> Match | None:
    n = g.node(i, "sign")
    inner = g.node(n.args[0]) if n else None
    if inner is None or inner.op not in ("mul", "div"):
        return None
    for x, c in _operands(inner):
        if _is_lit(c) and c > 0 and not _is_lit(x):
            return {"x": x}
    return None


def _interp_parts(n: Node | None) -> tuple[Ref, Ref, float] | None:
    if n is None or n.op != "interp" or not _is_lit(n.args[2]):
        return None
    return n.args[0], n.args[1], n.args[2]


def _interp_merge_x_match(g: Graph, i: int) -> Match | None:
    """interp(interp(x, y, a), y, b) = interp(x, y, 1 - (1-a)(1-b))."""
    outer = _interp_parts(g.node(i))
    inner = _interp_parts(g.node(outer[0])) if outer else None
    if inner is None or not _same(inner[1], outer[1]):
        return None
    a, b = inner[2], outer[2]
    return {"x": inner[0], "y": outer[1], "a": 1.0 - (1.0 - a) * (1.0 - b)}


def _interp_merge_y_match(g: Graph, i: int) -> Match | None:
    """interp(x, interp(x, y, a), b) = interp(x, y, a b)."""
    outer = _interp_parts(g.node(i))
    inner = _interp_parts(g.node(outer[1])) if outer else None
    if inner is None or not _same(inner[0], outer[0]):
        return None
    return {"x": outer[0], "y": inner[1], "a": inner[2] * outer[2]}


def _interp_merge_rewrite(g: Graph, i: int, m: Match) -> Graph:
    return g.with_node(i, "interp", (m["x"], m["y"], m["a"]))


def _interp_ends_match(g: Graph, i: int) -> Match | None:
    parts = _interp_parts(g.node(i))
    if parts is None:
        return None
    x, y, a = parts
    if a == 0.0 and not _is_lit(x):
        return {"x": x}
    if a == 1.0 and not _is_lit(y):
        return {"x": y}
    return None


def _interp_zero_match(g: Graph, i: int) -> Match | None:
    """interp(x, 0, a) = x * (1 - a); interp(0, y, a) = y * a (a literal)."""
    parts = _interp_parts(g.node(i))
    if parts is None:
        return None
    x, y, a = parts
    if y == 0.0 and _is_lit(y) and not _is_lit(x):
        return {"x": x, "c": float(np.float32(1.0) - np.float32(a))}
    if x == 0.0 and _is_lit(x) and not _is_lit(y):
        return {"x": y, "c": a}
    return None


def _mul_chain_match(g: Graph, i: int) -> Match | None:
    """(x * a) * b = x * (a b) for literals a, b."""
    n = g.node(i, "mul")
    if n is None:
        return None
    for inner_ref, b in _operands(n):
        inner = g.node(inner_ref, "mul")
        if inner is None or not _is_lit(b):
            continue
        for x, a in _operands(inner):
            if _is_lit(a) and not _is_lit(x):
                c = a * b
                if math.isfinite(c) and c != 0.0:
                    return {"x": x, "c": c}
    return None


def _scale_rewrite(g: Graph, i: int, m: Match) -> Graph:
    return g.with_node(i, "mul", (m["x"], m["c"]))


def _positive_scale(g: Graph, ref: Ref) -> tuple[Ref, float] | None:
    """``ref`` is ``x * c``, ``c * x`` or ``x / c`` with a literal ``c > 0``: ``(x, c)``."""
    n = g.node(ref)
    if n is None or n.op not in ("mul", "div"):
        return None
    for x, c in _operands(n):
        if _is_lit(c) and c > 0 and not _is_lit(x):
            return x, (c if n.op == "mul" else 1.0 / c)
    return None


def _absorb_lr_match(g: Graph, i: int) -> Match | None:
    """The update is ``X * L`` with ``L = lr * c`` or ``X = x * c`` (c > 0), lr read only there."""
    if g.output_map.get(OUTPUT) != i:
        return None
    n = g.node(i, "mul")
    if n is None:
        return None
    for x_ref, l_ref in _operands(n):
        if _is_lit(x_ref):
            continue
        if l_ref == "lr":
            scaled = _positive_scale(g, x_ref)
            if scaled and g.readers("lr") == [i]:
                return {"x": scaled[0], "lr_scale": scaled[1]}
        else:
            scaled = _positive_scale(g, l_ref)
            if scaled and _same(scaled[0], "lr") and g.readers("lr") == [l_ref]:
                if g.readers(l_ref) == [i]:
                    return {"x": x_ref, "lr_scale": scaled[1]}
    return None


def _rewrite_to(op: str) -> Callable[[Graph, int, Match], Graph]:
    return lambda g, i, m: g.with_node(i, op, (m["x"],))


_ONE, _ZERO = 1.0, 0.0

RULES: tuple[Rule, ...] = (
    Rule("fold_constants", "op(literals...) -> its float32 value (and so on downstream)",
         _fold_match, _fold_rewrite),
    Rule("step_constant",
         "f(t) with one float32 value at every step t <= 2**24 (sign(t), arctanh(t) clipped, "
         "min(t, 0.5), ...) -> that value",
         _step_constant_match, _fold_rewrite),
    Rule("mul_one", "x * 1 -> x", *_identity("mul", _ONE)),
    Rule("add_zero", "x + 0 -> x", *_identity("add", _ZERO)),
    Rule("sub_zero", "x - 0 -> x", *_identity("sub", _ZERO)),
    Rule("div_one", "x / 1 -> x", *_identity("div", _ONE)),
    Rule("mul_zero", "x * 0 -> 0 (x finite)", _mul_zero_match, lambda g, i, m: g.replace(i, 0.0)),
    Rule("zero_minus", "0 - x -> negative(x)", _zero_minus_match, _rewrite_to("negative")),
    Rule("double_negation", "negative(negative(x)) -> x", _double_negation_match,
         lambda g, i, m: g.replace(i, m["x"])),
    Rule("idempotent", "sign(sign(x)) -> sign(x); abs(abs(x)) -> abs(x)", _idempotent_match,
         lambda g, i, m: g.replace(i, m["x"])),
    Rule("sqrt_square", "sqrt(square(x)) -> abs(x)", _sqrt_square_match, _rewrite_to("abs")),
    Rule("div_abs", "x / abs(x) -> sign(x) (differs for 0 < |x| < eps)", _div_abs_match,
         _rewrite_to("sign")),
    Rule("div_sqrt_square", "x / sqrt(square(x)) -> sign(x) (differs for 0 < |x| < eps)",
         _div_sqrt_square_match, _rewrite_to("sign")),
    Rule("sign_positive_scale", "sign(c * x), sign(x / c) -> sign(x) for a literal c > 0",
         _sign_scale_match, _rewrite_to("sign")),
    Rule("interp_merge_outer", "interp(interp(x, y, a), y, b) -> interp(x, y, 1 - (1-a)(1-b))",
         _interp_merge_x_match, _interp_merge_rewrite),
    Rule("interp_merge_inner", "interp(x, interp(x, y, a), b) -> interp(x, y, a b)",
         _interp_merge_y_match, _interp_merge_rewrite),
    Rule("interp_ends", "interp(x, y, 0) -> x; interp(x, y, 1) -> y", _interp_ends_match,
         lambda g, i, m: g.replace(i, m["x"])),
    Rule("interp_zero", "interp(x, 0, a) -> x * (1-a); interp(0, y, a) -> y * a",
         _interp_zero_match, _scale_rewrite),
    Rule("mul_chain", "(x * a) * b -> x * (a b) for literals a, b", _mul_chain_match,
         _scale_rewrite),
    Rule("absorb_lr_scale",
         "update = (x * c) * lr or x * (lr * c), c > 0 -> x * lr; run at lr * c for the same step",
         _absorb_lr_match, lambda g, i, m: g.with_node(i, "mul", (m["x"], "lr")), exact=False),
)
"""The rule table, tried in this order at each live statement."""

CONSTANT_RULES: tuple[Rule, ...] = tuple(
    r for r in RULES
    if r.name in {"fold_constants", "mul_one", "add_zero", "sub_zero", "div_one", "mul_zero",
                  "zero_minus", "interp_ends", "interp_zero", "mul_chain"}
)
"""The rules that propagate literals (used after a never-written slot is replaced by 0)."""

RULES_BY_NAME: Mapping[str, Rule] = {r.name: r for r in RULES}


@dataclass(frozen=True)
class Rewrite:
    """One applicable rewrite: ``rule`` at statement ``index`` of the program it came from."""

    rule: Rule
    index: int
    program: Program
    lr_scale: float = 1.0


def rewrites(program: Program, rules: tuple[Rule, ...] = RULES) -> Iterator[Rewrite]:
    """Every rewrite of ``program`` that some rule allows and that gives a valid program.

    Yields in statement order, then rule order. ``lr_scale`` is 1 for exact rules.
    """
    graph = Graph.from_program(program)
    for i in graph.live():
        for rule in rules:
            m = rule.match(graph, i)
            if m is None:
                continue
            new = rule.rewrite(graph, i, m).to_program()
            if new is not None and new != program:
                yield Rewrite(rule, i, new, float(m.get("lr_scale", 1.0)))


def normalize_constants(graph: Graph, max_steps: int = 1000) -> Graph:
    """Apply :data:`CONSTANT_RULES` on the graph until none matches (literals propagated)."""
    for _ in range(max_steps):
        for i in graph.live():
            for rule in CONSTANT_RULES:
                m = rule.match(graph, i)
                if m is not None:
                    graph = rule.rewrite(graph, i, m)
                    break
            else:
                continue
            break
        else:
            return graph
    return graph
