"""The op registry: the one place an op exists.

Every op is declared once, as an :class:`Op`, with its NumPy implementation and its
TensorFlow form written once as source (``Op.src``): ``ops.source`` builds the TF callable
(``Op.tf_fn``) from that text and ``pipeline.export`` writes the same text into exported
modules, so the two cannot drift. The parser, printer, executors, abstract interpreter,
mutator and evaluator all read this table; none keeps a list of its own.

Shape rules (``Op.shape``):

* ``ELEMENTWISE`` - broadcasts its arguments (a scalar with a tensor gives a tensor).
* ``REDUCE`` - reduces its tensor arguments to a scalar.
* ``CONST`` - takes no arguments and gives a scalar.

Reductions take a keyword ``axis``: ``None`` (reduce everything, the per-tensor case) or a
tuple of axes, in which case the reduced axes are kept (``keepdims``) so the result
broadcasts against a population-batched tensor of shape ``[P, ...]``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from ops.source import Source

__all__ = ["FastPath", "InPlace", "Op", "OpRegistry", "PerVariable", "Shape"]

Interval = tuple[float, float]  # (lo, hi) bounds every element of a value; +-inf = unknown


class Shape(enum.Enum):
    ELEMENTWISE = "elementwise"
    REDUCE = "reduce"
    CONST = "const"


class PerVariable(enum.Enum):
    """How a reduction (``axis_arg``) acts on each variable's columns of a flat parameter row,
    as the evaluator applies a program to every variable of a model at once (the TF forms are
    in ``ops.segments``). Each variable's reduction broadcasts back over its columns."""

    NORM = "norm"  # sqrt(sum(x^2))
    RMS = "rms"  # sqrt(mean(x^2))
    DOT = "dot"  # sum(x * y)
    COSINE_SIM = "cosine_sim"  # dot(x, y) / (norm(x) * norm(y) + eps)
    CLIP_BY_RMS = "clip_by_rms"  # x * min(1, |c| / (rms(x) + eps)): elementwise, rms per variable


@dataclass(frozen=True)
class FastPath:
    """A cheaper implementation that gives *identical* results when argument ``arg`` is
    known to be ``>= at_least`` everywhere (e.g. division without its zero guard).

    ``src`` is its TF form, a template as ``Op.src``; ``tf_fn`` is built from it by the
    :class:`Op` that owns the path.
    """

    arg: int
    at_least: float
    np_fn: Callable = field(repr=False)
    src: str
    tf_fn: Source = field(init=False, repr=False, compare=False)


@dataclass(frozen=True)
class InPlace:
    """``op(*args) == args[arg] + delta(*args)`` (up to rounding).

    When an optimizer's state slot is written as ``op`` of its own old value (passed as
    argument ``arg``), the optimizer can update it in place with ``assign_add(delta)``, as
    hand-written optimizers do (Keras' Adam: ``m.assign_add((g - m) * (1 - b1))``).
    ``src`` is the delta as a source template over the op's arguments (as ``Op.src``);
    ``tf_delta`` is built from it by the :class:`Op` that owns the form.
    """

    arg: int
    src: str
    tf_delta: Source = field(init=False, repr=False, compare=False)


@dataclass(frozen=True)
class Op:
    """One building block of an optimizer program.

    Attributes:
        name: the name used in program text, ``x = name(a, b)``.
        arity: the number of arguments.
        shape: how the result's shape follows from the arguments' shapes.
        np_fn: NumPy implementation, on float32 arrays (reductions take ``axis=``).
        const_ok: for each argument, whether it may be a float literal.
        infix: the operator symbol when the op prints as ``a <sym> b`` (``+ - * /``).
        doc: one line stating the math, guards included.
        aliases: other names the parser accepts (printed back as ``name``).
        axis_arg: the implementations reduce internally and take ``axis=`` (see module doc).
        per_variable: how an ``axis_arg`` op reduces per variable (required exactly for those).
        interval: given an interval (lo, hi) per argument, an interval containing the result;
            used by ``pipeline.ranges`` to pick ``fast`` paths. None: nothing is known.
        fast: an unguarded implementation, valid under a bound on one argument.
        inplace: forms ``args[k] + delta`` that let an optimizer update a slot in place.
        src: the TensorFlow form, the one definition of it: an expression template over the
            arguments ``{0}``, ``{1}``, ... (tensors or Python floats) using ``tf.`` calls
            and the helper functions of ``src_helpers`` (see ``ops.source`` for what it may
            contain). ``pipeline.export`` writes programs with it.
        src_helpers: source of each module-level function (``def _name(...)``) that ``src``
            calls, e.g. a guarded division; written once at the top of an exported module.
        tf_fn: the TensorFlow implementation, built from ``src`` (same contract as
            ``np_fn``; reductions take ``axis=``).
    """

    name: str
    arity: int
    shape: Shape
    np_fn: Callable = field(repr=False, compare=False)
    const_ok: tuple[bool, ...] = ()
    infix: str | None = None
    doc: str = ""
    aliases: tuple[str, ...] = ()
    axis_arg: bool = False
    per_variable: PerVariable | None = None
    interval: Callable[..., Interval] | None = field(default=None, repr=False, compare=False)
    fast: FastPath | None = field(default=None, repr=False, compare=False)
    inplace: tuple[InPlace, ...] = field(default=(), repr=False, compare=False)
    src: str = field(default="", repr=False, compare=False)
    src_helpers: tuple[str, ...] = field(default=(), repr=False, compare=False)
    tf_fn: Source = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.const_ok) != self.arity:
            raise ValueError(
                f"op {self.name!r}: const_ok has {len(self.const_ok)} entries, "
                f"arity is {self.arity}"
            )
        if self.axis_arg != (self.per_variable is not None):
            raise ValueError(f"op {self.name!r}: an op with axis_arg needs per_variable, and "
                             f"only such an op has one (axis_arg={self.axis_arg}, "
                             f"per_variable={self.per_variable})")
        if not self.src:
            raise ValueError(f"op {self.name!r}: src (its TensorFlow form) is required")
        # The frozen dataclasses get their callables here, built from their source text.
        object.__setattr__(self, "tf_fn", self.source(self.src))
        if self.fast is not None:
            object.__setattr__(self.fast, "tf_fn", self.source(self.fast.src))
        for form in self.inplace:
            object.__setattr__(form, "tf_delta", self.source(form.src))

    def source(self, template: str) -> Source:
        """``template`` over this op's arguments, able to call its ``src_helpers``."""
        return Source(template, self.arity, helpers=self.src_helpers)


class OpRegistry(Mapping[str, Op]):
    """An immutable name -> Op table that also resolves aliases and infix symbols."""

    def __init__(self, ops: list[Op]):
        self._ops: dict[str, Op] = {}
        self._lookup: dict[str, Op] = {}
        self._infix: dict[str, Op] = {}
        for op in ops:
            for key in (op.name, *op.aliases):
                if key in self._lookup:
                    raise ValueError(f"op name {key!r} declared twice")
                self._lookup[key] = op
            self._ops[op.name] = op
            if op.infix is not None:
                self._infix[op.infix] = op

    def __getitem__(self, name: str) -> Op:
        return self._ops[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ops)

    def __len__(self) -> int:
        return len(self._ops)

    def resolve(self, name: str) -> Op | None:
        """The op a name or alias refers to, or None."""
        return self._lookup.get(name)

    def by_infix(self, symbol: str) -> Op | None:
        return self._infix.get(symbol)

    @property
    def infix_symbols(self) -> tuple[str, ...]:
        return tuple(self._infix)
