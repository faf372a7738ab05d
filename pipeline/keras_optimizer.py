"""ProgramOptimizer: any optimizer program as a Keras optimizer.

The program runs inside Keras' compiled train step (``update_step`` is traced once by
``tf.function``/XLA; no Python runs per step). The base class keeps what it owns: learning
rate schedules, clipping, EMA, loss scaling, gradient accumulation. Its config holds the
program *text*, which is parsed by our own parser on load, so a ``.keras`` file loads in
Keras' default safe mode once ``pipeline`` is imported, and hostile text fails to parse.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from pipeline.execute import run_step_constants, tensorflow_backend, tf_step
from pipeline.program import Program
from pipeline.statement import ProgramError

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
        # What runs: the same optimizer without dead code. Its slots are the state we keep.
        self._runnable = program.dead_code_eliminated()
        self._slot_names = self._runnable.slots
        # Statements that depend only on lr, t and literals run once per apply (per dtype),
        # not once per variable; the cache lives only during one _backend_update_step.
        self._step_constants: dict | None = None

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._slots = {s: self.add_optimizer_variables(var_list, s) for s in self._slot_names}

    def update_step(self, gradient, variable, learning_rate):
        if isinstance(gradient, tf.IndexedSlices):
            # Sparse gradients (Embedding): a program is a dense rule, as Keras' Adam is.
            gradient = tf.convert_to_tensor(gradient)
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        g = tf.cast(gradient, dtype)
        t = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        slot_vars = {s: self._slots[s][index] for s in self._slot_names}
        state = {s: tf.convert_to_tensor(v) for s, v in slot_vars.items()}
        w = tf.convert_to_tensor(variable)
        cache = self._step_constants
        if cache is not None and dtype in cache:
            known = cache[dtype]
        else:
            known = run_step_constants(self._runnable, tensorflow_backend(), lr, t, lr)
            if cache is not None:
                cache[dtype] = known
        def assign_add(slot: str, delta):  # returns the new value, read after the add
            return slot_vars[slot].value.assign_add(tf.cast(delta, dtype))

        # The slots are ours: zero at build, written only by the program; an EMA-like slot
        # is updated in place (assign_add), as Keras' own optimizers do.
        update, new_state = tf_step(
            self._runnable, w, g, state, lr, t, known=known, reachable_state=True,
            inplace=assign_add,
        )
        self.assign_sub(variable, update)
        for s, value in new_state.items():
            self.assign(slot_vars[s], value)

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
