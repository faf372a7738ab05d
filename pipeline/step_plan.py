"""The update step of a program optimizer, described once: :class:`~pipeline.ProgramOptimizer`
runs it and :mod:`pipeline.export` writes it as code.

In Keras' ``update_step(gradient, variable, learning_rate)``, for one variable:

1. a sparse gradient (``tf.IndexedSlices``, from an Embedding) is made dense, as Keras' Adam
   does: a program is a dense rule (``SPARSE``, ``DENSE``);
2. the program's inputs are loaded in the variable's dtype (``LOADS``): ``w``, ``g``, ``lr``
   and ``t = iterations + 1``, the 1-based step count;
3. the slot variables of the variable are found (``INDEX``) and the slots the program reads
   at the start are read (``READ_SLOT``);
4. the statements run; a slot of :func:`~pipeline.execute.inplace_plan` (an EMA) is updated in
   place, ``slot += cast(delta)`` (``ADD_IN_PLACE``), and later statements read its new value;
5. ``w <- w - update`` (``SUBTRACT_UPDATE``) and every other slot the program writes is
   assigned its new value (``ASSIGN_SLOT``).

:class:`StepPlan` holds what depends on the program (which inputs, slots, in-place slots);
each primitive above is an :class:`ops.source.Source` over the names of ``update_step``'s
scope (``SCOPE``): the optimizer calls it on the values (:func:`run`), the exporter writes it
with the names (:func:`write`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ops.source import Source
from pipeline.execute import inplace_plan
from pipeline.program import Program

__all__ = [
    "ADD_IN_PLACE",
    "ASSIGN_SLOT",
    "DENSE",
    "DTYPE",
    "INDEX",
    "LOADS",
    "READ_SLOT",
    "SCOPE",
    "SPARSE",
    "SUBTRACT_UPDATE",
    "StepPlan",
    "run",
    "write",
]

# update_step's scope: parameter of a primitive -> its name in the generated code.
SCOPE: Mapping[str, str] = {
    "optimizer": "self",
    "gradient": "gradient",
    "variable": "variable",
    "learning_rate": "learning_rate",
    "dtype": "dtype",
    "index": "index",
}
_ATTRIBUTES = ("dtype", "iterations", "value", "assign_add", "assign_sub", "assign",
               "_get_variable_index")


def _step(text: str) -> Source:
    return Source(text, attributes=_ATTRIBUTES)


SPARSE = _step("lambda gradient: isinstance(gradient, tf.IndexedSlices)")
DENSE = _step("lambda gradient: tf.convert_to_tensor(gradient)")
DTYPE = _step("lambda variable: variable.dtype")
LOADS: Mapping[str, Source] = {  # each program input -> its value at the step's start
    "w": _step("lambda variable: tf.convert_to_tensor(variable)"),
    "g": _step("lambda gradient, dtype: tf.cast(gradient, dtype)"),
    "lr": _step("lambda learning_rate, dtype: tf.cast(learning_rate, dtype)"),
    "t": _step("lambda optimizer, dtype: tf.cast(optimizer.iterations + 1, dtype)"),
}
INDEX = _step("lambda optimizer, variable: optimizer._get_variable_index(variable)")
READ_SLOT = _step("lambda slot: tf.convert_to_tensor(slot)")
# Returns the new value (read after the add), which later statements use.
ADD_IN_PLACE = _step("lambda slot, delta, dtype: slot.value.assign_add(tf.cast(delta, dtype))")
SUBTRACT_UPDATE = _step(
    "lambda optimizer, variable, update: optimizer.assign_sub(variable, update)")
ASSIGN_SLOT = _step("lambda optimizer, slot, value: optimizer.assign(slot, value)")


def run(primitive: Source, scope: Mapping[str, Any], **values: Any) -> Any:
    """Call ``primitive`` on the values of ``scope`` and ``values``, by parameter name."""
    return primitive(*(values[p] if p in values else scope[p] for p in primitive.params))


def write(primitive: Source, **names: str) -> str:
    """``primitive`` as code: ``SCOPE``'s names, and ``names`` for the other parameters."""
    return primitive.render(*(names[p] if p in names else SCOPE[p] for p in primitive.params))


@dataclass(frozen=True)
class StepPlan:
    """What a program's update step does, for one variable (see the module doc).

    Attributes:
        program: the statements that run: the program without dead code.
        inputs: the inputs (of ``w, g, lr, t``) read before any statement writes them.
        slots: the state slots that get a slot variable (see :meth:`of`).
        reads: the slots read at the step's start (their value is the previous step's).
        inplace: statement index -> (slot, ``InPlace`` form index), slots updated in place.
        assigns: the other slots the program writes, assigned at the end.
    """

    program: Program
    inputs: tuple[str, ...]
    slots: tuple[str, ...]
    reads: tuple[str, ...]
    inplace: Mapping[int, tuple[str, int]]
    assigns: tuple[str, ...]

    @classmethod
    def of(cls, program: Program, *, keep_unread_slots: bool = False) -> StepPlan:
        """The plan of ``program``. A slot the program writes before it reads it carries
        nothing to the next step and needs no variable; ``keep_unread_slots=True`` keeps one
        anyway (ProgramOptimizer does, so ``.keras`` files saved with such slots load)."""
        runnable = program.dead_code_eliminated()
        start = runnable.dataflow.reads_at_start()  # names read before the step assigns them
        assigned = {st.target for st in runnable.statements}
        inplace = inplace_plan(runnable)
        in_place = {slot for slot, _ in inplace.values()}
        reads = tuple(s for s in runnable.slots if s in start)
        slots = runnable.slots if keep_unread_slots else reads
        return cls(
            program=runnable,
            inputs=tuple(x for x in LOADS if x in start),
            slots=slots,
            reads=reads,
            inplace=inplace,
            assigns=tuple(s for s in slots if s in assigned and s not in in_place),
        )

    @property
    def dense_gradient(self) -> bool:
        """Whether a sparse gradient is made dense (the program reads ``g``)."""
        return "g" in self.inputs
