"""``evaluate``: train many programs on a task, in batches, with a caller-owned
:class:`Evaluator` holding the traced trainers."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

from pipeline.evaluator.encode import N_FIXED, registers_needed
from pipeline.evaluator.trainer import EvalResult, Hurdles, Trainer, train_batch
from pipeline.program import Program
from pipeline.tasks import Task, make_task

__all__ = ["Evaluator", "default_population", "evaluate"]

_DEFAULT_HURDLES = Hurdles()  # checked at a quarter and half of training, against AdamW


class Evaluator:
    """The traced trainers of the tasks a caller evaluates, for as long as it keeps this.

    A trainer is traced once per task (seconds) and owns a mutable register file, so two
    calls at once never share one: a call takes an idle trainer of its task, or builds one if
    none is idle, and gives it back when done. N threads evaluating at once hold at most N
    trainers per task, and each gets exactly the results one thread gets. At most
    ``max_tasks`` tasks keep idle trainers (the least recently used are dropped).
    ``close()`` (or leaving a ``with`` block) drops them all.
    """

    def __init__(self, max_tasks: int = 8):
        self.max_tasks = max_tasks
        self._idle: OrderedDict[Task, list[Trainer]] = OrderedDict()
        self._lock = threading.Lock()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop every idle trainer (a call running now keeps its own until it ends)."""
        with self._lock:
            self._idle.clear()

    @contextlib.contextmanager
    def trainer(self, task: Task) -> Iterator[Trainer]:
        """A trainer of ``task`` (its ``seed`` aside) for this call alone."""
        key = dataclasses.replace(task, seed=0)  # the seed is an input, not in the trace
        with self._lock:
            idle = self._idle.get(key)
            trainer = idle.pop() if idle else None
        if trainer is None:  # built outside the lock: loading data and tracing take seconds
            trainer = Trainer(key)
        try:
            yield trainer
        finally:
            with self._lock:
                self._idle.setdefault(key, []).append(trainer)
                self._idle.move_to_end(key)
                while len(self._idle) > self.max_tasks:
                    self._idle.popitem(last=False)

    def evaluate(
        self,
        programs: Sequence[Program | str],
        task: Task | str,
        scale: float = 1.0,
        seed: int = 0,
        *,
        hurdles: Hurdles = _DEFAULT_HURDLES,
        population: int | None = None,
        curve_points: int = 10,
    ) -> list[EvalResult]:
        """Train every program on ``task`` (a name, built at ``scale`` and ``seed``, or a
        Task).

        Programs run in batches of ``population`` members (default:
        :func:`default_population`), each batch one call of the compiled step loop. Returns
        one :class:`EvalResult` per program, in order. A program's result does not depend on
        its batch-mates.
        """
        if isinstance(task, str):
            task = make_task(task, scale=scale, seed=seed)
        progs = [p if isinstance(p, Program) else Program.parse(p) for p in programs]
        if not progs:
            return []
        use_baseline = hurdles.baseline_margin is not None and bool(hurdles.points)
        everyone = [*progs, *([hurdles.baseline] if use_baseline else [])]
        if population is None:
            population = default_population(task, everyone)
        size = max(1, population - int(use_baseline))
        results: list[EvalResult] = []
        with self.trainer(task) as trainer:
            for lo in range(0, len(progs), size):
                results += train_batch(trainer, task, progs[lo : lo + size], hurdles,
                                       use_baseline, curve_points)
        return results


_DEFAULT = Evaluator()  # for callers that keep none: safe from any number of threads


def evaluate(
    programs: Sequence[Program | str],
    task: Task | str,
    scale: float = 1.0,
    seed: int = 0,
    *,
    hurdles: Hurdles = _DEFAULT_HURDLES,
    population: int | None = None,
    curve_points: int = 10,
    evaluator: Evaluator | None = None,
) -> list[EvalResult]:
    """:meth:`Evaluator.evaluate` on ``evaluator`` (default: one shared by the process)."""
    return (evaluator or _DEFAULT).evaluate(programs, task, scale, seed, hurdles=hurdles,
                                            population=population, curve_points=curve_points)


def default_population(task: Task, programs: Sequence[Program]) -> int:
    """Members per batch of ``programs``: 1024 on CPU; on a GPU, enough to fill about half
    its memory.

    Heuristic: a member costs about ``4 bytes x n_params x (8 + registers + 10)`` (register
    file, theta, gradients, temporaries) plus its activations, estimated as
    ``4 x batch x 64 x n_params ** 0.5``; the GPU's memory / 2 over that, clipped to
    [1024, 65536] and rounded down to a power of two. ``registers`` is the most fresh
    registers a program takes, rounded up to a multiple of 8 (at least 8), so a search's
    batches, whose programs differ by a statement or two, get one size.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return 1024
    try:
        details = tf.config.experimental.get_device_details(gpus[0])
        total = details.get("memory_limit", 0) or 16 * 2**30
    except (ValueError, RuntimeError):
        total = 16 * 2**30
    registers = max(8, -(-max(map(registers_needed, programs)) // 8) * 8)
    per_member = 4 * task.n_params * (N_FIXED + registers + 10)
    per_member += 4 * task.batch_size * 64 * int(task.n_params**0.5)
    p = int(np.clip(total / 2 / per_member, 1024, 65536))
    return 2 ** int(math.log2(p))
