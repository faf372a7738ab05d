"""lionforge's library: programs, seeds, executors, and the Keras optimizer that runs them.

>>> from pipeline import Program, ProgramOptimizer, seeds
>>> print(seeds.lion().to_text(), end="")
c = interp(g, m, 0.9)
u = sign(c)
update = u * lr
m = interp(g, m, 0.99)

Importing this package registers :class:`ProgramOptimizer` with Keras, so a saved model that
uses it loads with plain ``keras.saving.load_model``.
"""

from pipeline import seeds
from pipeline.execute import numpy_step, tf_step
from pipeline.keras_optimizer import ProgramOptimizer
from pipeline.program import INPUTS, OUTPUT, STATE_SLOTS, Program, ProgramError, Statement

__all__ = [
    "INPUTS",
    "OUTPUT",
    "STATE_SLOTS",
    "Program",
    "ProgramError",
    "ProgramOptimizer",
    "Statement",
    "numpy_step",
    "seeds",
    "tf_step",
]


def __getattr__(name: str):
    # pipeline.load_optimizer / load_program without importing MLflow on every `import pipeline`.
    if name in ("load_optimizer", "load_program"):
        from pipeline import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
