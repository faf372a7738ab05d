"""The batched evaluator: train a population of optimizer programs at once, in one TF graph.

Four small pieces, each a module:

* ``encode`` - programs as arrays: dead code dropped, a register per name, step constants
  hoisted and literals given rows of their own, the members sorted by op at each position.
* ``machine`` - the in-graph register machine that runs those arrays on a flat register
  file, each op once per position on just the rows that use it, reductions per variable.
* ``trainer`` - the compiled training segment of one task (every member's parameters are
  rows of one tensor; one gradient tape for all) and the hurdles that stop bad members.
* ``evaluator`` - :func:`evaluate` and the caller-owned :class:`Evaluator` that holds the
  traced trainers, one per task and concurrent call, for as long as its owner keeps it.

>>> from pipeline.evaluator import Evaluator, NO_HURDLES
>>> with Evaluator() as ev:  # doctest: +SKIP
...     [r] = ev.evaluate(["update = g * lr"], "teacher", hurdles=NO_HURDLES)

Fitness is higher-is-better (see ``trainer``); a program's result does not depend on its
batch-mates, on the batch size, or on which thread evaluates it.
"""

from pipeline.evaluator.encode import Encoded, encode, positions_needed, registers_needed
from pipeline.evaluator.evaluator import Evaluator, default_population, evaluate
from pipeline.evaluator.trainer import NO_HURDLES, EvalResult, Hurdles, StopReason

__all__ = [
    "NO_HURDLES",
    "Encoded",
    "EvalResult",
    "Evaluator",
    "Hurdles",
    "StopReason",
    "default_population",
    "encode",
    "evaluate",
    "positions_needed",
    "registers_needed",
]
