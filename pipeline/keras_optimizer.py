"""ProgramOptimizer: any optimizer program as a Keras optimizer.

The program runs inside Keras' compiled train step (``update_step`` is traced once by
``tf.function``/XLA; no Python runs per step). The base class keeps what it owns: learning
rate schedules, clipping, EMA, loss scaling, gradient accumulation. Its config holds the
program *text*, which is parsed by our own parser on load, so a ``.keras`` file loads in
Keras' default safe mode once ``pipeline`` is imported, and hostile text fails to parse.
The step itself (sparse gradients, dtype casts, ``t``, in-place slot updates) is the plan of
:mod:`pipeline.step_plan`, which :mod:`pipeline.export` writes as code.
"""

from __future__ import annotations

import keras

from pipeline.execute import run_step_constants, tensorflow_backend, tf_step
from pipeline.program import Program
from pipeline.statement import ProgramError
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
    run,
)

__all__ = ["ProgramOptimizer"]


@keras.saving.register_keras_serializable(package="lionforge")
class ProgramOptimizer(keras.optimizers.Optimizer):
    """Runs an optimizer program: ``w <- w - update(w, g, state, lr, t)``.

    Args:
        program: a :class:`Program`, or its text.
        learning_rate: a float, a ``keras.optimizers.schedules.LearningRateSchedule``, or a
            callable; the program reads it as ``lr``. Defaults to ``0.001``.
        name: the optimizer's name.
        **kwargs: the base optimizer's keyword arguments (``clipnorm``, ``use_ema``, ...).

    Example::

        opt = ProgramOptimizer(seeds.lion(), learning_rate=3e-4)
        model.compile(optimizer=opt, loss="mse")
    """

    def __init__(self, program: Program | str, learning_rate=0.001, name=None, **kwargs):
        if isinstance(program, str):
            program = Program.parse(program)
        elif not isinstance(program, Program):
            raise TypeError(
                "Argument `program` must be a lionforge Program or its text. "
                f"Received: program={program!r} of type {type(program).__name__}."
            )
        super().__init__(learning_rate=learning_rate, name=name or "program_optimizer", **kwargs)
        self.program = program
        # What runs: the program without dead code, walked as pipeline.export writes it.
        self._plan = StepPlan.of(program, keep_unread_slots=True)
        # Statements that depend only on lr, t and literals run once per apply (per dtype),
        # not once per variable; the cache lives only during one _backend_update_step.
        self._step_constants: dict | None = None

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._slots = {s: self.add_optimizer_variables(var_list, s) for s in self._plan.slots}

    def update_step(self, gradient, variable, learning_rate):
        plan = self._plan
        scope = {"optimizer": self, "gradient": gradient, "variable": variable,
                 "learning_rate": learning_rate}
        if plan.dense_gradient and run(SPARSE, scope):
            scope["gradient"] = run(DENSE, scope)
        dtype = scope["dtype"] = run(DTYPE, scope)
        # w is also the shape the executor broadcasts to, so it is loaded in any case.
        x = {name: run(LOADS[name], scope) for name in ("w", *plan.inputs)}
        index = run(INDEX, scope)
        slot_vars = {s: self._slots[s][index] for s in plan.slots}
        state = {s: run(READ_SLOT, scope, slot=slot_vars[s]) for s in plan.reads}
        lr, t = x.get("lr"), x.get("t")
        cache = self._step_constants
        if cache is not None and dtype in cache:
            known = cache[dtype]
        else:
            known = run_step_constants(plan.program, tensorflow_backend(), lr, t, lr)
            if cache is not None:
                cache[dtype] = known

        def add_in_place(slot: str, delta):
            return run(ADD_IN_PLACE, scope, slot=slot_vars[slot], delta=delta)

        # The slots are ours: zero at build, written only by the program (reachable state).
        update, new_state = tf_step(plan.program, x["w"], x.get("g"), state, lr, t, known=known,
                                    reachable_state=True, inplace=add_in_place)
        run(SUBTRACT_UPDATE, scope, update=update)
        for s in plan.assigns:
            run(ASSIGN_SLOT, scope, slot=slot_vars[s], value=new_state[s])

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # One call per apply, covering every variable: scope the step-constant cache to it.
        self._step_constants = {}
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._step_constants = None

    def get_config(self):
        config = super().get_config()
        config["program"] = self.program.to_text()
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        text = config.get("program")
        if not isinstance(text, str):
            raise ProgramError(
                f"ProgramOptimizer config needs 'program' as text; got {type(text).__name__}"
            )
        Program.parse(text)  # fail on bad text before anything else is built
        return super().from_config(config, custom_objects=custom_objects)
