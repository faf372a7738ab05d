"""Export: a program as a standalone Python module that needs only Keras and TensorFlow.

The module defines one ``keras.optimizers.Optimizer`` subclass whose ``update_step`` is the
step plan of :mod:`pipeline.step_plan` (the one :class:`~pipeline.ProgramOptimizer` runs)
written as straight-line TensorFlow code: the plan's primitives rendered with the method's
names, and one line per live statement (each op rendered from its ``Op.src``, the text its
TF callable is built from, guards included) under a comment holding the original statement.
It computes exactly what :class:`~pipeline.ProgramOptimizer` computes.
Nothing is evaluated here: the program's names and literals are checked by ``Program``, and
names that would clash with Python or with the module's own names are renamed.

>>> from pipeline import seeds
>>> source = export_module(seeds.lion(), "Lion2")
>>> "class Lion2(keras.optimizers.Optimizer):" in source
True
"""

from __future__ import annotations

import keyword
import re
import textwrap
from pathlib import Path

from ops import OPS, Shape
from ops.source import Source
from pipeline.program import IGNORES_LR, Program
from pipeline.ranges import fast_statements
from pipeline.statement import OUTPUT, format_number
from pipeline.step_plan import (
    ADD_IN_PLACE,
    ASSIGN_SLOT,
    DENSE,
    DTYPE,
    INDEX,
    LOADS,
    READ_SLOT,
    SPARSE,
    SUBTRACT_UPDATE,
    StepPlan,
    write,
)

__all__ = ["export_module", "write_module"]

# Names the generated update_step uses besides the program's variables (builtins included).
_MODULE_NAMES = frozenset(
    {"tf", "keras", "self", "gradient", "variable", "learning_rate", "dtype", "index",
     "isinstance", "super", "warnings"}
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _reserved(class_name: str) -> frozenset[str]:
    helpers = {h.name for op in OPS.values() for h in op.tf_fn.helpers}
    return frozenset(
        _MODULE_NAMES | helpers | {class_name} | set(keyword.kwlist)
    )


def _renames(program: Program, reserved: frozenset[str]) -> dict[str, str]:
    """Program name -> Python name: itself, or with ``_`` appended until it is free."""
    names = {st.target for st in program.statements}
    names.update(a for st in program.statements for a in st.reads())
    out = {}
    for name in sorted(names):
        new = name
        while new in reserved or (new != name and new in names):
            new += "_"
        out[name] = new
        names.add(new)
    return out


def _str(text: str) -> str:
    """A Python string literal, in double quotes where that needs no escapes."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return repr(text)


def _snake(class_name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()


def _indent(text: str, spaces: int) -> list[str]:
    pad = " " * spaces
    return [pad + line if line else "" for line in text.splitlines()]


def _docstring(program: Program, dropped: int) -> list[str]:
    slots = [f"``{s}``" for s in program.live_slots]
    if len(slots) > 1:
        state = f"state slots {', '.join(slots)} start at zero and keep their values"
    elif slots:
        state = f"state slot {slots[0]} starts at zero and keeps its value"
    else:
        state = "no state is kept"
    intro = (
        "For each variable ``w`` with gradient ``g`` (``lr`` is the learning rate, ``t`` the "
        f"1-based step count; {state} between steps), one step computes ``update`` and sets "
        "``w <- w - update``::"
    )
    lines = [
        '"""An update rule found by lionforge\'s program search, as a Keras optimizer.',
        "",
        *textwrap.wrap(intro, 88),
        "",
        *_indent(program.to_text(), 4),
        "",
    ]
    if dropped:
        lines[-1:-1] = [f"    # ({dropped} statement(s) that never reach update left out)"]
    used = sorted({st.op for st in program.statements if OPS[st.op].infix not in ("+", "-", "*")})
    if used:
        lines += ["Functions (``update_step`` spells out each one, guards included):", ""]
        lines += [f"* ``{name}``: {OPS[name].doc}" for name in used]
        lines.append("")
    reads = ("the rule reads it as ``lr``." if program.reads_lr else
             "WARNING: the rule never reads it; its step size is built in.")
    lines += [
        "Args:",
        "    learning_rate: a float, a ``keras.optimizers.schedules.LearningRateSchedule``",
        f"        or a callable; {reads}",
        "    name: the optimizer's name.",
        "    **kwargs: the base optimizer's keyword arguments (``clipnorm``, ``use_ema``, ...).",
        '"""',
    ]
    return lines


def _warn_lines(message: str) -> list[str]:
    """``__init__``'s lines that warn with ``message`` (one string split over lines)."""
    parts = [f"            {_str(part)}"
             for part in textwrap.wrap(message, 72, drop_whitespace=False)]
    parts[-1] += ","
    return ["        warnings.warn(", *parts, "            UserWarning,",
            "            stacklevel=2,", "        )"]


def _prologue(plan: StepPlan, names: dict[str, str], needs_dtype: bool) -> list[str]:
    """Densify, load the inputs, find and read the slots (``pipeline.step_plan``)."""
    lines = []
    if plan.dense_gradient:
        lines += [
            f"if {write(SPARSE)}:",
            "    # A sparse gradient (Embedding): the rule is dense, as in Keras' Adam.",
            f"    gradient = {write(DENSE)}",
        ]
    if needs_dtype:
        lines.append(f"dtype = {write(DTYPE)}")
    lines += [f"{names[x]} = {write(LOADS[x])}" for x in plan.inputs]
    if plan.slots:
        lines.append(f"index = {write(INDEX)}")
    lines += [f"{names[s]} = {write(READ_SLOT, slot=_slot(s))}" for s in plan.reads]
    return lines


def _slot(name: str) -> str:
    return f"self._{name}_slots[index]"


def _statements(plan: StepPlan, names: dict[str, str]) -> tuple[list[str], list[Source], set[str]]:
    """The statements as code, the helper sources they call, and the names that hold a value
    of the variable's shape after them."""
    full = {x for x in ("w", "g") if x in plan.inputs} | set(plan.reads)
    fast = fast_statements(plan.program, reachable=True)  # the optimizer owns its slots
    helpers: dict[str, Source] = {}  # by name: each op that calls a helper has its own copy
    code = []
    for i, st in enumerate(plan.program.statements):
        op = OPS[st.op]
        args = [names[a] if isinstance(a, str) else format_number(a) for a in st.args]
        if i in plan.inplace:
            slot, k = plan.inplace[i]
            delta = op.inplace[k].tf_delta.render(*args)
            if not any(a in full for a in st.reads()):
                delta = f"tf.broadcast_to({delta}, tf.shape(variable))"
            code.append(f"# {st.to_text()}  (in place: the slot += delta)")
            code.append(f"{names[st.target]} = "
                        f"{write(ADD_IN_PLACE, slot=_slot(slot), delta=delta)}")
            full.add(st.target)
            continue
        source = op.fast.tf_fn if i in fast and op.fast is not None else op.tf_fn
        helpers.update((h.name, h) for h in source.helpers)
        line = f"{names[st.target]} = {source.render(*args)}"
        if line != st.to_text():
            code.append(f"# {st.to_text()}")
        code.append(line)
        if op.shape is Shape.ELEMENTWISE and any(a in full for a in st.reads()):
            full.add(st.target)
        else:
            full.discard(st.target)
    return code, list(helpers.values()), full


def _update_step(plan: StepPlan, names: dict[str, str]) -> tuple[list[str], list[Source]]:
    """The body of ``update_step`` and the helper sources it calls."""
    code, helpers, full = _statements(plan, names)

    def value(name: str) -> str:  # a value cast and broadcast to the variable's shape
        if name in full:
            return names[name]
        return f"tf.broadcast_to(tf.cast({names[name]}, dtype), tf.shape(variable))"

    epilogue = [write(SUBTRACT_UPDATE, update=value(OUTPUT))]
    epilogue += [write(ASSIGN_SLOT, slot=_slot(s), value=value(s)) for s in plan.assigns]
    primitives = [LOADS[x] for x in plan.inputs] + ([ADD_IN_PLACE] if plan.inplace else [])
    needs_dtype = (any("dtype" in p.params for p in primitives)
                   or any(value(x) != names[x] for x in (OUTPUT, *plan.assigns)))
    return _prologue(plan, names, needs_dtype) + code + epilogue, helpers


def _checked(program, class_name: str, learning_rate) -> tuple[Program, float]:
    """``export_module``'s arguments checked: the program parsed, the rate a float."""
    if isinstance(program, str):
        program = Program.parse(program)
    elif not isinstance(program, Program):
        raise TypeError(
            f"Argument `program` must be a Program or its text. Received: {type(program).__name__}"
        )
    if not _IDENTIFIER.match(class_name) or class_name in _reserved(""):
        raise ValueError(
            "Argument `class_name` must be a Python identifier other than a keyword, builtin "
            f"or the module's own names. Received: class_name={class_name!r}"
        )
    learning_rate = float(learning_rate)
    if not learning_rate > 0 or learning_rate == float("inf"):
        raise ValueError(
            "Argument `learning_rate` must be a finite float > 0. "
            f"Received: learning_rate={learning_rate!r}"
        )
    return program, learning_rate


def _module_head(class_name: str, helpers: list[Source], reads_lr: bool) -> list[str]:
    """The module docstring, the imports and the helper functions."""
    out = [
        f'"""{class_name}: an optimizer found by lionforge\'s program search, as plain code.',
        "",
        "Standalone: needs only ``keras`` and ``tensorflow``; the rule is stated in the class",
        "docstring. Importing this module registers the class with Keras, so ``.keras`` files",
        f"that use {class_name} load.",
        '"""',
        "",
        *([] if reads_lr else ["import warnings", ""]),
        "import keras",
        "import tensorflow as tf",
        "",
    ]
    for helper in sorted(helpers, key=lambda h: h.name):
        out += ["", *helper.text.rstrip("\n").splitlines(), ""]
    return out


def export_module(
    program: Program | str,
    class_name: str = "DiscoveredOptimizer",
    *,
    learning_rate: float = 1e-3,
    name: str | None = None,
    package: str = "lionforge_export",
) -> str:
    """The source of a standalone module defining ``class_name``, a Keras optimizer running
    ``program`` (a :class:`Program` or its text); it imports only ``keras`` and ``tensorflow``.

    Args:
        program: the rule; only its live statements are written.
        class_name: the optimizer class's name (a Python identifier).
        learning_rate: the default learning rate of the class's ``__init__``.
        name: the optimizer's default name; ``class_name`` in snake case if None.
        package: the package the class is registered under for Keras serialization.

    The output is a pure function of the arguments (no dates, no versions).
    """
    program, learning_rate = _checked(program, class_name, learning_rate)
    name = _snake(class_name) if name is None else str(name)
    plan = StepPlan.of(program)
    runnable = plan.program
    body, helpers = _update_step(plan, _renames(runnable, _reserved(class_name)))
    out = _module_head(class_name, helpers, runnable.reads_lr)
    out += [
        "",
        f"@keras.saving.register_keras_serializable(package={_str(package)})",
        f"class {class_name}(keras.optimizers.Optimizer):",
        *_indent("\n".join(_docstring(runnable, len(program) - len(runnable))), 4),
        "",
        f"    def __init__(self, learning_rate={learning_rate!r}, name={_str(name)}, **kwargs):",
        "        super().__init__(learning_rate=learning_rate, name=name, **kwargs)",
        *([] if runnable.reads_lr else _warn_lines(IGNORES_LR)),
        "",
    ]
    if plan.slots:
        out += [
            "    def build(self, var_list):",
            "        if self.built:",
            "            return",
            "        super().build(var_list)",
            *(f"        self._{s}_slots = self.add_optimizer_variables(var_list, {_str(s)})"
              for s in plan.slots),
            "",
        ]
    out += [
        "    def update_step(self, gradient, variable, learning_rate):",
        *_indent("\n".join(body), 8),
        "",
        "    def get_config(self):",
        "        # The rule is the code above: only the base optimizer's settings are config.",
        "        return super().get_config()",
        "",
    ]
    return "\n".join(out)


def write_module(program: Program | str, path: str | Path, **kwargs) -> Path:
    """Write :func:`export_module`'s source to ``path`` (UTF-8); returns the path.

    ``kwargs`` are :func:`export_module`'s (``class_name``, ``learning_rate``, ...).
    """
    path = Path(path)
    path.write_text(export_module(program, **kwargs), encoding="utf-8")
    return path
