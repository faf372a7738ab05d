"""``Source``: a TensorFlow function written once, as Python source, run and rendered by us.

An op's TensorFlow form is declared only as text (``Op.src``, ``Op.src_helpers``): an
expression template such as ``"tf.pow(tf.maximum(tf.abs({0}), 1e-30), {1})"``, or a small
``def`` for a helper several ops call (``pipeline.step_plan`` writes the optimizer step's own
primitives the same way, as ``lambda`` text). This module parses the text once with
:mod:`ast` and

* **runs** it: a tree of closures over a fixed name table, so the callable performs exactly
  the calls the text spells (``tf.<path>`` from ``ops.lazy_tf``, the builtins ``abs``,
  ``float`` and ``isinstance``, the helpers given, and the parameters). Nothing is ever
  passed to ``eval``/``exec``/``compile``; a name or construct outside the table is refused
  when the text is parsed (at import);
* **renders** it: the expression with its parameters replaced by given source text (a
  variable name or a literal), for ``pipeline.export``. ``tf.add``, ``tf.subtract``,
  ``tf.multiply``, ``tf.divide`` and ``tf.negative`` render as Python's operators, which
  call the same TensorFlow kernels on tensors (the functions are kept in the text because
  on two Python floats they still give a float32 tensor, as the executors expect).

Reductions follow the ops' ``axis`` contract (``ops.registry``): ``tf.reduce_sum(x)`` and
``tf.reduce_mean(x)`` reduce everything when the call's ``axis`` is None, else they reduce
``axis`` with ``keepdims=True``; the axis reaches the helpers a function calls.

Supported: parameters, constants, ``tf.`` paths, attributes of values from an allow-list
(``.dtype`` by default), calls, ``+ - * /``, unary ``-``, one comparison, ``a if c else b``;
in a ``def``: a docstring, ``name = expr``, ``if``/``else`` and ``return``.
"""

from __future__ import annotations

import ast
import copy
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ops.lazy_tf import tf

__all__ = ["Source"]

_BUILTINS: dict[str, Any] = {"abs": abs, "float": float, "isinstance": isinstance}
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
            ast.GtE: operator.ge}
_REDUCTIONS = frozenset({("reduce_sum",), ("reduce_mean",)})
# tf functions rendered as operators: (tf path) -> binary operator node or unary minus.
_AS_OPERATOR = {("add",): ast.Add, ("subtract",): ast.Sub, ("multiply",): ast.Mult,
                ("divide",): ast.Div, ("negative",): ast.USub}

Env = dict[str, Any]  # parameters and locals, plus _AXIS
_AXIS = "<axis>"  # not an identifier: no parameter or local can shadow it
Node = Callable[[Env], Any]


class _Return(Exception):
    def __init__(self, value):
        self.value = value


def _tf_path(node: ast.expr) -> tuple[str, ...] | None:
    """``('math', 'log')`` for the expression ``tf.math.log``; None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "tf" and parts:
        return tuple(reversed(parts))
    return None


def _resolve(path: tuple[str, ...]):
    obj = tf
    for name in path:
        obj = getattr(obj, name)
    return obj


class Source:
    """A function given as text: an expression template over ``{0}, {1}, ...``, a
    ``lambda`` (an expression over named parameters) or a ``def``.

    Args:
        text: the source.
        arity: for a template, the number of arguments; None for a ``lambda`` or ``def``.
        helpers: ``def`` sources (or :class:`Source` objects) the text may call by name.
        attributes: attribute names the text may read from values (not from ``tf``).
    """

    def __init__(self, text: str, arity: int | None = None, *,
                 helpers: Sequence[str | Source] = (), attributes: Sequence[str] = ("dtype",)):
        self.text = text
        self._attributes = frozenset(attributes)
        self._helpers = {h.name: h for h in (
            h if isinstance(h, Source) else Source(h, attributes=attributes) for h in helpers)}
        self._locals: set[str] = set()
        self._called: list[str] = []  # helpers the text calls, in first-call order
        if arity is None:
            tree = ast.parse(text)
            node = tree.body[0] if len(tree.body) == 1 else None
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Lambda):
                self.name = ""
                self.params = tuple(a.arg for a in node.value.args.args)
                self._expr = node.value.body
                self._body = self._compile(self._expr)
            elif isinstance(node, ast.FunctionDef):
                self.name = node.name
                self.params = tuple(a.arg for a in node.args.args)
                self._expr = None
                self._body = self._block(node.body)
            else:
                raise ValueError(f"expected one 'def name(...):' or lambda in {text[:40]!r}")
        else:
            self.name = ""
            self.params = tuple(f"_arg{i}" for i in range(arity))
            try:
                self._expr = ast.parse(text.format(*self.params), mode="eval").body
            except (SyntaxError, IndexError) as err:
                raise ValueError(f"bad source template {text!r}: {err}") from err
            self._body = self._compile(self._expr)

    # ---- running ------------------------------------------------------------------------

    def __call__(self, *args, axis=None):
        if len(args) != len(self.params):
            raise TypeError(f"{self.text!r} takes {len(self.params)} arguments, "
                            f"got {len(args)}")
        env: Env = dict(zip(self.params, args, strict=True))
        env[_AXIS] = axis
        if self._expr is not None:
            return self._body(env)
        try:
            self._body(env)
        except _Return as ret:
            return ret.value
        raise ValueError(f"{self.name}: ended without return")

    def _block(self, stmts: list[ast.stmt]) -> Callable[[Env], None]:
        steps = []
        for i, st in enumerate(stmts):
            if i == 0 and isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant):
                continue  # the docstring
            steps.append(self._statement(st))

        def run(env: Env) -> None:
            for step in steps:
                step(env)

        return run

    def _statement(self, st: ast.stmt) -> Callable[[Env], None]:
        if isinstance(st, ast.Return) and st.value is not None:
            value = self._compile(st.value)

            def ret(env):
                raise _Return(value(env))

            return ret
        if (isinstance(st, ast.Assign) and len(st.targets) == 1
                and isinstance(st.targets[0], ast.Name)):
            target, value = st.targets[0].id, self._compile(st.value)
            self._locals.add(target)
            return lambda env: env.__setitem__(target, value(env))
        if isinstance(st, ast.If):
            test, then, other = self._compile(st.test), self._block(st.body), self._block(
                st.orelse)
            return lambda env: then(env) if test(env) else other(env)
        raise ValueError(f"{self.text[:40]!r}: unsupported statement {ast.dump(st)[:60]}")

    def _compile(self, node: ast.expr) -> Node:
        """``node`` as a closure over the environment (see the module doc for what is allowed)."""
        if isinstance(node, ast.Constant) and isinstance(node.value, float | int):
            value = node.value
            return lambda env: value
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Attribute):
            path = _tf_path(node)
            if path is not None:
                return lambda env: _resolve(path)
            if node.attr not in self._attributes:
                raise ValueError(f"{self.text[:40]!r}: attribute {node.attr!r} not allowed")
            base, attr = self._compile(node.value), node.attr
            return lambda env: getattr(base(env), attr)
        if isinstance(node, ast.Call) and not node.keywords:
            return self._call(node)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            fn, left, right = _BINOPS[type(node.op)], self._compile(node.left), self._compile(
                node.right)
            return lambda env: fn(left(env), right(env))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            operand = self._compile(node.operand)
            return lambda env: -operand(env)
        if (isinstance(node, ast.Compare) and len(node.ops) == 1
                and type(node.ops[0]) in _COMPARE):
            fn, left = _COMPARE[type(node.ops[0])], self._compile(node.left)
            right = self._compile(node.comparators[0])
            return lambda env: fn(left(env), right(env))
        if isinstance(node, ast.IfExp):
            test, body, other = (self._compile(n) for n in (node.test, node.body, node.orelse))
            return lambda env: body(env) if test(env) else other(env)
        raise ValueError(f"{self.text[:40]!r}: unsupported expression {ast.unparse(node)!r}")

    def _name(self, name: str) -> Node:
        if name in self.params or name in self._locals:
            return lambda env: env[name]
        if name in _BUILTINS:
            value = _BUILTINS[name]
            return lambda env: value
        if name in self._helpers:
            helper = self._helpers[name]
            if name not in self._called:
                self._called.append(name)
            return lambda env: lambda *args: helper(*args, axis=env[_AXIS])
        raise ValueError(f"{self.text[:40]!r}: unknown name {name!r}")

    def _call(self, node: ast.Call) -> Node:
        args = [self._compile(a) for a in node.args]
        path = _tf_path(node.func)
        if path in _REDUCTIONS:
            def reduce(env):
                fn, axis = _resolve(path), env[_AXIS]
                x = [a(env) for a in args]
                return fn(*x) if axis is None else fn(*x, axis=axis, keepdims=True)

            return reduce
        fn = self._compile(node.func)
        return lambda env: fn(env)(*(a(env) for a in args))

    # ---- rendering ----------------------------------------------------------------------

    @property
    def helpers(self) -> tuple[Source, ...]:
        """The helpers (``def`` sources) the source calls, in first-call order."""
        return tuple(self._helpers[name] for name in self._called)

    def render(self, *args: str) -> str:
        """The expression with its parameters replaced by ``args`` (source text each)."""
        if self._expr is None:
            raise ValueError(f"{self.name}: a def is written as it is, not rendered")
        names = dict(zip(self.params, args, strict=True))
        return ast.unparse(_Render(names).visit(copy.deepcopy(self._expr)))


class _Render(ast.NodeTransformer):
    """Parameters -> given text; ``tf.add(a, b)`` and friends -> operators."""

    def __init__(self, names: Mapping[str, str]):
        self._names = names

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return ast.Name(self._names.get(node.id, node.id))

    def visit_Call(self, node: ast.Call) -> ast.expr:
        node = self.generic_visit(node)
        op = _AS_OPERATOR.get(_tf_path(node.func) or ())
        if op is ast.USub and len(node.args) == 1:
            return ast.UnaryOp(ast.USub(), node.args[0])
        if op is not None and op is not ast.USub and len(node.args) == 2:
            return ast.BinOp(node.args[0], op(), node.args[1])
        return node
