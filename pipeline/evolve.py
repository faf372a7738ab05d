"""Regularized evolution over optimizer programs, warm-started from a seed.

The algorithm (Real et al. 2019; Chen et al. 2023, §2) from small pieces, as PyGlove writes
it ``Random(T) >> Top(1) >> mutator`` with ``Last(P)``::

    parent     = tournament(population, rng, T)      # selection: best of T drawn at random
    child      = mutate(parent.program, rng, ...)     # mutation (redrawn until new and valid)
    to_score   = screen.screen(children)              # cache hits settled (pipeline.screen)
    screen.settle(batch, evaluate(to_score))          # the rest scored, then cached
    population = age(population, newcomers, P)        # population update: the oldest go

Children are proposed in batches of ``batch_size`` from one population snapshot so that an
evaluator can score many programs at once. Before evaluation each child passes abstract
execution (inside the mutator) and the :class:`~pipeline.screen.Screen` (structural and
functional-equivalence caches); only the rest reach ``evaluate``. Fitness is
higher-is-better, ``-inf`` the worst. Restarts refill the population from the seed or the
best after ``restart_patience`` candidates without improvement or every ``restart_every``.

:class:`Search` is the driver: ``propose()`` / ``tell()`` (or ``step(evaluate)``) one batch at
a time, for a Prefect flow, or ``run(evaluate, budget)``. Its counts are one
:class:`~pipeline.stats.SearchStats`. Given a checkpoint path it saves after every batch
through a :class:`~pipeline.store.Store` (an append-only records file and a small checkpoint,
O(population + batch) per save); :meth:`Search.resume` reads it back, the screen rebuilds its
caches itself, and the search continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import assert_never

import numpy as np

from pipeline import seeds
from pipeline.fitness import from_json as fitness_from_json
from pipeline.fitness import to_json as fitness_to_json
from pipeline.mutate import mutate, random_program
from pipeline.program import Program
from pipeline.records import CandidateRecord
from pipeline.screen import Evaluate, Screen, Screened, Verdict
from pipeline.search_config import Budget, EvolutionConfig, RestartFrom, Strategy
from pipeline.statement import Statement
from pipeline.stats import SearchStats
from pipeline.store import Store

__all__ = [
    "Child",
    "Individual",
    "Search",
    "age",
    "evaluate_each",
    "propose_child",
    "tournament",
]


@dataclass(frozen=True)
class Individual:
    """A member of the population: a program with its fitness and ancestry depth."""

    program: Program
    fitness: float
    structural_hash: str
    generation: int


@dataclass(frozen=True)
class Child:
    """A proposed candidate before caching and evaluation.

    ``program`` is ``None`` when every redraw was rejected; ``text`` and ``rejection`` then
    describe the last draw.
    """

    program: Program | None
    text: str
    parent_hash: str
    mutation: str
    generation: int
    rejection: str = ""
    redraws: Counter = field(default_factory=Counter)


# ---- the pieces ---------------------------------------------------------------------------------


def tournament(
    population: Sequence[Individual], rng: np.random.Generator, size: int
) -> Individual:
    """Selection: the fittest of ``size`` members drawn at random (with replacement)."""
    picks = rng.integers(len(population), size=size)
    best = population[int(picks[0])]
    for k in picks[1:]:
        if population[int(k)].fitness > best.fitness:
            best = population[int(k)]
    return best


def age(
    population: Sequence[Individual], newcomers: Sequence[Individual], size: int
) -> tuple[Individual, ...]:
    """Population update (aging): append the newcomers, keep the youngest ``size``."""
    return (*population, *newcomers)[-size:]


def _text(statements: Sequence[Statement]) -> str:
    return "".join(st.to_text() + "\n" for st in statements)


def propose_child(
    population: Sequence[Individual],
    rng: np.random.Generator,
    config: EvolutionConfig,
    seed_length: int,
) -> Child:
    """One child by the configured strategy."""
    match config.strategy:
        case Strategy.EVOLUTION:
            parent = tournament(population, rng, config.tournament_size)
            r = mutate(parent.program, rng, config.mutation)
            return Child(
                r.child,
                r.child.to_text() if r.child is not None else _text(r.statements),
                parent.structural_hash,
                r.kind.value,
                parent.generation + 1,
                r.rejection.value if r.rejection is not None else "",
                r.rejections,
            )
        case Strategy.RANDOM:
            lo, hi = config.random_length or (max(1, seed_length - 3), seed_length + 3)
            length = int(rng.integers(lo, hi + 1))
            program, statements, reason, redraws = random_program(rng, length, config.mutation)
            return Child(
                program,
                _text(statements),
                "",
                "random",
                0,
                reason.value if reason is not None else "",
                redraws,
            )
        case _:
            assert_never(config.strategy)


def evaluate_each(fitness: Callable[[Program], float]) -> Evaluate:
    """A batch evaluator from a per-program fitness function (e.g. ``numpy_tasks.Quadratic``)."""

    def evaluate(programs: Sequence[Program]) -> list[float]:
        return [fitness(p) for p in programs]

    return evaluate


# ---- the driver ---------------------------------------------------------------------------------


class Search:
    """Regularized evolution (or a baseline) as a resumable, batch-by-batch driver.

    Args:
        config: the search's knobs (default ``EvolutionConfig()``).
        seed: the warm-start program (default ``seeds.paper_adamw()``); the whole initial
            population is this program.
        rng_seed: seeds the one ``np.random.Generator`` every draw comes from.
        checkpoint: if given, the state is saved there after each batch (see the module doc).
    """

    def __init__(
        self,
        config: EvolutionConfig | None = None,
        seed: Program | None = None,
        *,
        rng_seed: int = 0,
        checkpoint: str | os.PathLike | None = None,
    ):
        self.config = config = config if config is not None else EvolutionConfig()
        self.seed = seed if seed is not None else seeds.paper_adamw()
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.rng = np.random.default_rng(rng_seed)
        self.population: tuple[Individual, ...] = ()
        self.seed_individual: Individual | None = None
        self.best: Individual | None = None  # the fittest so far (the earliest among equals)
        self.records: list[CandidateRecord] = []
        self.screen = Screen(config.structural_cache, config.fec_cache_size, config.probe)
        self.stats = SearchStats()
        self._since_improvement = 0  # candidates since the best last improved
        self._pending: tuple[list[Child], list[Screened]] | None = None
        self._store: Store | None = None  # the store last saved to

    # -- one batch --

    def propose(self, max_children: int | None = None) -> list[Program]:
        """Propose the next batch; returns the programs that need an evaluation.

        Rejected children and cache hits are settled here; call :meth:`tell` with the
        fitnesses of the returned programs (in order) to finish the batch.
        """
        if self._pending is not None:
            raise RuntimeError("propose() called twice without tell()")
        if self.seed_individual is None:
            children = [Child(self.seed, self.seed.to_text(), "", "seed", 0)]
        else:
            n = self.config.batch_size if max_children is None else max_children
            if n < 1:
                raise ValueError(f"max_children must be >= 1, got {n}")
            children = [
                propose_child(self.population, self.rng, self.config, len(self.seed))
                for _ in range(n)
            ]
        for child in children:
            self.stats.redraws.update(r.value for r in child.redraws)
        screened, to_evaluate = self.screen.screen([c.program for c in children])
        self._pending = (children, screened)
        return to_evaluate

    def tell(self, fitnesses: Sequence[float | Verdict]) -> list[CandidateRecord]:
        """Finish the batch :meth:`propose` started; returns its candidate records.

        A :class:`~pipeline.screen.Verdict` in place of a fitness records its detail (the
        evaluator's rejection reason, the winning learning-rate multipliers).
        """
        if self._pending is None:
            raise RuntimeError("tell() called without propose()")
        children, screened = self._pending
        self.screen.settle(screened, fitnesses)
        self._pending = None
        pairs = list(zip(children, screened, strict=True))
        records = [_record(c, s, len(self.records) + k) for k, (c, s) in enumerate(pairs)]
        self.records.extend(records)
        self.stats.count(records)
        self._update_population([
            Individual(c.program, s.fitness, c.program.structural_hash(), c.generation)
            for c, s in pairs
            if c.program is not None
        ], len(children))
        if self.checkpoint is not None:
            self.save(self.checkpoint)
        return records

    def _update_population(self, newcomers: list[Individual], told: int) -> None:
        if self.seed_individual is None:
            self.seed_individual = self.best = newcomers[0]
            self.population = (newcomers[0],) * self.config.population_size
            return
        self.population = age(self.population, newcomers, self.config.population_size)
        improved = False
        for ind in newcomers:
            if ind.fitness > self.best.fitness:
                self.best, improved = ind, True
        self._since_improvement = 0 if improved else self._since_improvement + told
        patience, every = self.config.restart_patience, self.config.restart_every
        n = len(self.records)
        due = every is not None and n // every > (n - told) // every
        if (patience is not None and self._since_improvement >= patience) or due:
            self._restart()

    def _restart(self) -> None:
        match self.config.restart_from:
            case RestartFrom.SEED:
                start = self.seed_individual
            case RestartFrom.BEST:
                start = self.best
            case RestartFrom.ALTERNATE:
                start = self.seed_individual if self.stats.restarts % 2 == 0 else self.best
            case _:
                assert_never(self.config.restart_from)
        self.population = (start,) * self.config.population_size
        self.stats.restarts += 1
        self._since_improvement = 0

    def step(self, evaluate: Evaluate, max_children: int | None = None) -> list[CandidateRecord]:
        """Propose a batch, evaluate what needs it, and record it."""
        t0 = time.perf_counter()
        programs = self.propose(max_children)
        fitnesses = list(evaluate(programs)) if programs else []
        self.stats.elapsed_s += time.perf_counter() - t0
        return self.tell(fitnesses)

    def run(
        self,
        evaluate: Evaluate,
        budget: Budget | int,
        on_batch: Callable[[list[CandidateRecord]], None] | None = None,
    ) -> list[CandidateRecord]:
        """Step until the budget is spent (counting candidates since the search began).

        ``budget`` is a :class:`Budget` or a number of candidates. ``on_batch`` gets each
        batch's records after the batch is recorded (and checkpointed).
        """
        if isinstance(budget, int):
            budget = Budget(candidates=budget)
        start = time.perf_counter()
        new: list[CandidateRecord] = []
        while True:
            if budget.candidates is not None and len(self.records) >= budget.candidates:
                break
            if budget.seconds is not None and time.perf_counter() - start >= budget.seconds:
                break
            left = None if budget.candidates is None else budget.candidates - len(self.records)
            n = self.config.batch_size if left is None else min(self.config.batch_size, left)
            records = self.step(evaluate, n)
            new.extend(records)
            if on_batch is not None:
                on_batch(records)
        return new

    # -- checkpoints --

    def to_json(self) -> dict:
        """The checkpoint's state: everything but the records (``"records"`` is how many it
        covers; they live in the records file) and the cache entries (``pipeline.screen``)."""
        if self._pending is not None:
            raise RuntimeError("cannot checkpoint between propose() and tell()")
        programs: dict[str, int] = {}  # text -> position (equal hashes may differ in text)
        state = {
            "config": self.config.to_json(),
            "seed": self.seed.to_text(),
            "rng": self.rng.bit_generator.state,
            "population": [_individual_to_json(i, programs) for i in self.population],
            "seed_individual": _individual_to_json(self.seed_individual, programs),
            "best": _individual_to_json(self.best, programs),
            "records": len(self.records),
            **self.screen.to_json(),
            "rejections": dict(self.stats.rejections),
            "redraws": dict(self.stats.redraws),
            "evaluations": self.stats.evaluations,
            "since_improvement": self._since_improvement,
            "restarts": self.stats.restarts,
            "elapsed": self.stats.elapsed_s,
        }
        state["programs"] = list(programs)
        return state

    def save(self, path: str | os.PathLike) -> None:
        """Checkpoint to ``path`` (:class:`~pipeline.store.Store`): the records not yet in
        its records file are appended, then the state replaces the checkpoint."""
        if self._store is None or self._store.path != Path(path):
            self._store = Store(path)
        self._store.save(self.to_json(), self.records, self.screen.notes)

    @classmethod
    def resume(
        cls, path: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None
    ) -> Search:
        """The search saved at ``path``, ready to continue exactly as an uninterrupted one
        would; checkpoints go to ``checkpoint`` (default: ``path`` itself)."""
        store = Store(path)
        d, records, notes = store.load()
        search = cls(
            EvolutionConfig.from_json(d["config"]),
            Program.parse(d["seed"]),
            checkpoint=store.path if checkpoint is None else checkpoint,
        )
        search.rng.bit_generator.state = d["rng"]
        parsed: dict[str, Individual] = {}
        search.population = tuple(_individual_from_json(e, d, parsed) for e in d["population"])
        search.seed_individual = _individual_from_json(d["seed_individual"], d, parsed)
        search.best = _individual_from_json(d["best"], d, parsed)
        search.records = records
        search.screen.restore(d, records, notes)
        search.stats.count(records)
        search.stats.redraws = Counter(d["redraws"])
        search.stats.restarts, search.stats.elapsed_s = d["restarts"], d["elapsed"]
        search._since_improvement = d["since_improvement"]
        if search.checkpoint == store.path:
            search._store = store
        return search


def _record(child: Child, s: Screened, index: int) -> CandidateRecord:
    return CandidateRecord(
        index=index,
        program=child.text,
        structural_hash=child.program.structural_hash() if child.program is not None else "",
        fingerprint=s.fingerprint,
        parent_hash=child.parent_hash,
        mutation=child.mutation,
        generation=child.generation,
        stage="proxy",
        fitness=s.fitness,
        cache_hit=s.cache_hit,
        rejection=child.rejection or s.rejection,
        lr_multipliers=s.lr_multipliers,
    )


def _individual_to_json(i: Individual | None, programs: dict[str, int]) -> list | None:
    """``[program position, hash, fitness, generation]``; ``programs`` collects the texts."""
    if i is None:
        return None
    k = programs.setdefault(i.program.to_text(), len(programs))
    return [k, i.structural_hash, fitness_to_json(i.fitness), i.generation]


def _individual_from_json(e: list | None, d: dict, parsed: dict) -> Individual | None:
    """The inverse of :func:`_individual_to_json` for checkpoint ``d`` (equal entries give
    one object, kept in ``parsed``)."""
    if e is None:
        return None
    key = json.dumps(e)
    if key not in parsed:
        k, h, fit, gen = e
        parsed[key] = Individual(Program.parse(d["programs"][k]), fitness_from_json(fit), h, gen)
    return parsed[key]
