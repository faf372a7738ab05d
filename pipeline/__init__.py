"""lionforge's library: programs, seeds, executors, and the Keras optimizer that runs them.

>>> from pipeline import Program, ProgramOptimizer, seeds
>>> print(seeds.lion().to_text(), end="")
c = interp(g, m, 0.9)
u = sign(c)
update = u * lr
m = interp(g, m, 0.99)

``ProgramOptimizer``, the executors and the registry's loaders are imported on first use
(``from pipeline import ProgramOptimizer`` registers the class with Keras, so a saved model
that uses it loads with plain ``keras.saving.load_model``): parsing, printing and checking a
program import neither TensorFlow nor MLflow.
"""

import importlib

from pipeline import seeds
from pipeline.program import Program
from pipeline.statement import INPUTS, OUTPUT, STATE_SLOTS, ProgramError, Statement

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

_LAZY = {  # name -> the module that defines it (TensorFlow or MLflow behind each)
    "ProgramOptimizer": "pipeline.keras_optimizer",
    "numpy_step": "pipeline.execute",
    "tf_step": "pipeline.execute",
    "load_optimizer": "pipeline.registry",
    "load_program": "pipeline.registry",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
