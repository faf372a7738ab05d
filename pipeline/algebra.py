"""Algebraic rewrites of programs, from one explicit rule table.

Rewriting happens on a program's :class:`~pipeline.graph.Graph` (replace a node by one of
its inputs, or change its op and arguments), which is then written back as a
:class:`~pipeline.program.Program`. Whether a function of the step ``t`` is one constant is
decided by :func:`pipeline.stepwise.constant_over_steps`, the evaluator's interpreter.

Each :class:`Rule` in :data:`RULES` has a name, a matcher that looks at one node and the nodes
that define its arguments, and a rewrite. All rules but ``absorb_lr_scale`` keep the step's
behaviour (up to float32 rounding and the division guard ``EPS``); ``absorb_lr_scale`` scales
the update by a positive constant, which a learning rate ``lr * lr_scale`` undoes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from ops import OPS
from pipeline.dataflow import Ref
from pipeline.graph import Graph, Node, is_literal, is_node, same_ref
from pipeline.program import Program
from pipeline.statement import OUTPUT, Statement
from pipeline.stepwise import constant_over_steps

__all__ = [
    "CONSTANT_RULES",
    "Rewrite",
    "Rule",
    "RULES",
    "RULES_BY_NAME",
    "normalize_constants",
    "rewrites",
]

_COMMUTATIVE = frozenset({"add", "mul", "max", "min"})


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
        if c == literal and is_literal(c) and not is_literal(x):
            return {"x": x}
    return None


def _identity(op: str, literal: float) -> tuple[Callable, Callable]:
    return (lambda g, i: _binary_with(g, i, op, literal)), (lambda g, i, m: g.replace(i, m["x"]))


def _fold_match(g: Graph, i: int) -> Match | None:
    n = g.node(i)
    if n is None or not all(is_literal(a) for a in n.args):
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


_T_MAX_NODES = 8  # bounds the check; a larger one folds once its first constant part has


def _t_statements(g: Graph, ref: Ref) -> tuple[Statement, ...] | None:
    """``ref`` as statements of literals and ``t`` whose last computes it (node ``k``'s value
    is named ``_k``); None if it reads anything else (or is larger than ``_T_MAX_NODES``).
    Shared subexpressions appear once."""
    entries: list[Statement] = []
    index: dict[int, str] = {}

    def visit(r: Ref, depth: int) -> Ref | None:
        if is_literal(r) or r == "t":
            return r
        if r in index:
            return index[r]
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
        index[r] = f"_{len(entries)}"
        entries.append(Statement(index[r], n.op, tuple(args)))
        return index[r]

    return None if visit(ref, 0) is None else tuple(entries)


def _t_constant(g: Graph, ref: Ref) -> float | None:
    statements = _t_statements(g, ref)
    return None if statements is None else constant_over_steps(statements)


def _step_constant_match(g: Graph, i: int) -> Match | None:
    """Node ``i`` reads ``t`` (and only literals otherwise) yet has one value at every step.

    Only the first such node on a path matches: one whose argument is such a node becomes a
    literal function of literals once that one is folded (the fold cascades downstream).
    """
    n = g.node(i)
    if n is None or all(is_literal(a) for a in n.args):
        return None  # fold_constants' case
    if any(is_node(a) and _t_constant(g, a) is not None for a in n.args):
        return None
    value = _t_constant(g, i)
    return None if value is None else {"value": value}


def _mul_zero_match(g: Graph, i: int) -> Match | None:
    n = g.node(i, "mul")
    if n is None:
        return None
    zero = any(is_literal(c) and c == 0.0 and not is_literal(x) for x, c in _operands(n))
    return {} if zero else None


def _zero_minus_match(g: Graph, i: int) -> Match | None:
    n = g.node(i, "sub")
    if n is None or n.args[0] != 0.0 or not is_literal(n.args[0]) or is_literal(n.args[1]):
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
    ok = den is not None and same_ref(den.args[0], n.args[0]) and not is_literal(n.args[0])
    return {"x": n.args[0]} if ok else None


def _div_sqrt_square_match(g: Graph, i: int) -> Match | None:
    n = g.node(i, "div")
    if n is None:
        return None
    root = g.node(n.args[1], "sqrt")
    sq = g.node(root.args[0], "square") if root else None
    ok = sq is not None and same_ref(sq.args[0], n.args[0]) and not is_literal(n.args[0])
    return {"x": n.args[0]} if ok else None


def _sign_scale_match(g: Graph, i: int) -> Match | None:
    n = g.node(i, "sign")
    inner = g.node(n.args[0]) if n else None
    if inner is None or inner.op not in ("mul", "div"):
        return None
    for x, c in _operands(inner):
        if is_literal(c) and c > 0 and not is_literal(x):
            return {"x": x}
    return None


def _interp_parts(n: Node | None) -> tuple[Ref, Ref, float] | None:
    if n is None or n.op != "interp" or not is_literal(n.args[2]):
        return None
    return n.args[0], n.args[1], n.args[2]


def _interp_merge_x_match(g: Graph, i: int) -> Match | None:
    """interp(interp(x, y, a), y, b) = interp(x, y, 1 - (1-a)(1-b))."""
    outer = _interp_parts(g.node(i))
    inner = _interp_parts(g.node(outer[0])) if outer else None
    if inner is None or not same_ref(inner[1], outer[1]):
        return None
    a, b = inner[2], outer[2]
    return {"x": inner[0], "y": outer[1], "a": 1.0 - (1.0 - a) * (1.0 - b)}


def _interp_merge_y_match(g: Graph, i: int) -> Match | None:
    """interp(x, interp(x, y, a), b) = interp(x, y, a b)."""
    outer = _interp_parts(g.node(i))
    inner = _interp_parts(g.node(outer[1])) if outer else None
    if inner is None or not same_ref(inner[0], outer[0]):
        return None
    return {"x": outer[0], "y": inner[1], "a": inner[2] * outer[2]}


def _interp_merge_rewrite(g: Graph, i: int, m: Match) -> Graph:
    return g.with_node(i, "interp", (m["x"], m["y"], m["a"]))


def _interp_ends_match(g: Graph, i: int) -> Match | None:
    parts = _interp_parts(g.node(i))
    if parts is None:
        return None
    x, y, a = parts
    if a == 0.0 and not is_literal(x):
        return {"x": x}
    if a == 1.0 and not is_literal(y):
        return {"x": y}
    return None


def _interp_zero_match(g: Graph, i: int) -> Match | None:
    """interp(x, 0, a) = x * (1 - a); interp(0, y, a) = y * a (a literal)."""
    parts = _interp_parts(g.node(i))
    if parts is None:
        return None
    x, y, a = parts
    if y == 0.0 and is_literal(y) and not is_literal(x):
        return {"x": x, "c": float(np.float32(1.0) - np.float32(a))}
    if x == 0.0 and is_literal(x) and not is_literal(y):
        return {"x": y, "c": a}
    return None


def _mul_chain_match(g: Graph, i: int) -> Match | None:
    """(x * a) * b = x * (a b) for literals a, b."""
    n = g.node(i, "mul")
    if n is None:
        return None
    for inner_ref, b in _operands(n):
        inner = g.node(inner_ref, "mul")
        if inner is None or not is_literal(b):
            continue
        for x, a in _operands(inner):
            if is_literal(a) and not is_literal(x):
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
        if is_literal(c) and c > 0 and not is_literal(x):
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
        if is_literal(x_ref):
            continue
        if l_ref == "lr":
            scaled = _positive_scale(g, x_ref)
            if scaled and g.readers("lr") == [i]:
                return {"x": scaled[0], "lr_scale": scaled[1]}
        else:
            scaled = _positive_scale(g, l_ref)
            if scaled and same_ref(scaled[0], "lr") and g.readers("lr") == [l_ref]:
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
