"""Regularized evolution over optimizer programs, warm-started from a seed.

The algorithm (Real et al. 2019; Chen et al. 2023, §2) from small pieces::

    parent   = tournament(population, rng, T)        # selection: best of T drawn at random
    child    = mutate(parent.program, rng, ...)       # mutation (redrawn until new and valid)
    population = age(population, children, P)        # population update: the oldest go

Children are proposed in batches of ``batch_size`` from one population snapshot so that an
evaluator can score many programs at once. Before evaluation each child passes abstract
execution (inside the mutator), the structural cache and the functional-equivalence cache;
only the rest reach ``evaluate``. Fitness is higher-is-better, ``-inf`` the worst.

:class:`Search` is the driver: ``propose()`` / ``tell()`` (or ``step(evaluate)``) one batch at
a time, for a Prefect flow, or ``run(evaluate, budget)``. Given a checkpoint path it saves
after every batch, in O(population + batch): the candidate records go to an append-only
JSON-lines file next to the checkpoint (``search.json`` -> ``search.records.jsonl``, fsync'd
first), then the checkpoint (population, RNG, counters, and how many records it covers) is
replaced atomically. :meth:`Search.resume` drops record lines beyond that count (a crash
between the two writes), rebuilds the caches by replaying the records' cache operations,
and continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import enum
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import assert_never

import numpy as np

from pipeline import seeds
from pipeline.cache import (
    DEFAULT_PROBE,
    FECCache,
    Probe,
    StructuralCache,
    fingerprint,
)
from pipeline.fitness import WORST, finite_or_worst
from pipeline.fitness import from_json as fitness_from_json
from pipeline.fitness import to_json as fitness_to_json
from pipeline.mutate import MutationConfig, mutate, random_program
from pipeline.program import Program
from pipeline.records import CandidateRecord
from pipeline.statement import Statement

__all__ = [
    "Budget",
    "Child",
    "EvolutionConfig",
    "Individual",
    "RestartFrom",
    "Scored",
    "Search",
    "SearchStats",
    "Strategy",
    "age",
    "evaluate_each",
    "propose_child",
    "records_path",
    "tournament",
]

CHECKPOINT_VERSION = 2


@dataclass(frozen=True)
class Scored:
    """An evaluator's verdict with its detail: the fitness, the learning-rate multiplier
    that won on each proxy task (``pipeline.proxy``), and, when the evaluator gave up on the
    program, worst fitness and the reason (e.g. ``"timeout"``). A result with a reason is
    recorded but never cached: the program may do better in another batch."""

    fitness: float = WORST
    rejection: str = ""
    lr_multipliers: tuple[float, ...] = ()


Evaluate = Callable[[Sequence[Program]], Sequence["float | Scored"]]


class Strategy(enum.Enum):
    """How children are made: mutants of tournament winners, or fresh random programs."""

    EVOLUTION = "evolution"
    RANDOM = "random"


class RestartFrom(enum.Enum):
    """What a restart fills the population with."""

    SEED = "seed"  # exploration
    BEST = "best"  # exploitation
    ALTERNATE = "alternate"  # seed, best, seed, ...


@dataclass(frozen=True)
class EvolutionConfig:
    """The search's knobs; defaults are the Lion paper's where it gives them.

    Attributes:
        population_size: P (paper: 1000).
        tournament_size: T (paper: 2).
        batch_size: children proposed (and evaluated) together.
        restart_patience: restart after this many candidates without a strictly better best
            (``None``: never).
        restart_every: also restart every this many candidates (``None``: never).
        restart_from: what a restart fills the population with.
        structural_cache: use the structural (dataflow hash) cache.
        fec_cache_size: entries of the functional-equivalence LRU cache (0: no FEC).
        mutation: the mutation config.
        strategy: evolution, or the random-search baseline.
        random_length: (min, max) statements of random programs; ``None``: seed length +- 3.
        probe: the fixed inputs of FEC fingerprints.
    """

    population_size: int = 1000
    tournament_size: int = 2
    batch_size: int = 64
    restart_patience: int | None = None
    restart_every: int | None = None
    restart_from: RestartFrom = RestartFrom.ALTERNATE
    structural_cache: bool = True
    fec_cache_size: int = 100_000
    mutation: MutationConfig = MutationConfig()
    strategy: Strategy = Strategy.EVOLUTION
    random_length: tuple[int, int] | None = None
    probe: Probe = DEFAULT_PROBE

    def __post_init__(self) -> None:
        for name in ("population_size", "tournament_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.tournament_size > self.population_size:
            raise ValueError(
                f"tournament_size must be <= population_size ({self.population_size}), "
                f"got {self.tournament_size}"
            )
        for name in ("restart_patience", "restart_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be None or >= 1, got {value}")
        if self.fec_cache_size < 0:
            raise ValueError(f"fec_cache_size must be >= 0, got {self.fec_cache_size}")
        rl = self.random_length
        if rl is not None and not 1 <= rl[0] <= rl[1]:
            raise ValueError(f"random_length must be (min, max) with 1 <= min <= max, got {rl}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["restart_from"] = self.restart_from.value
        d["strategy"] = self.strategy.value
        d["probe"] = {k: v for k, v in d["probe"].items() if not k.startswith("_")}
        return d

    @classmethod
    def from_json(cls, d: dict) -> EvolutionConfig:
        d = dict(d)
        m = dict(d["mutation"])
        m["ops"] = tuple(m["ops"])
        p = dict(d["probe"])
        p["shapes"] = tuple(tuple(s) for s in p["shapes"])
        d["mutation"] = MutationConfig(**m)
        d["probe"] = Probe(**p)
        d["restart_from"] = RestartFrom(d["restart_from"])
        d["strategy"] = Strategy(d["strategy"])
        if d["random_length"] is not None:
            d["random_length"] = tuple(d["random_length"])
        return cls(**d)


@dataclass(frozen=True)
class Budget:
    """When to stop: after ``candidates`` candidates and/or ``seconds`` of wall time."""

    candidates: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.candidates is None and self.seconds is None:
            raise ValueError("a Budget needs candidates or seconds (or both)")


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


# ---- stats ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchStats:
    """Counts over all candidates so far. Hit rates are fractions of all candidates."""

    candidates: int
    evaluations: int
    structural_hits: int
    fec_hits: int
    rejected: int
    rejections: dict[str, int]
    redraws: dict[str, int]
    restarts: int
    elapsed_s: float

    @property
    def structural_hit_rate(self) -> float:
        return self.structural_hits / max(1, self.candidates)

    @property
    def fec_hit_rate(self) -> float:
        return self.fec_hits / max(1, self.candidates)

    @property
    def hit_rate(self) -> float:
        return (self.structural_hits + self.fec_hits) / max(1, self.candidates)

    @property
    def evaluations_saved(self) -> int:
        return self.structural_hits + self.fec_hits

    @property
    def candidates_per_s(self) -> float:
        return self.candidates / self.elapsed_s if self.elapsed_s > 0 else math.nan


# ---- the driver ---------------------------------------------------------------------------------


@dataclass
class _Pending:
    child: Child
    fingerprint: str = ""
    fitness: float = WORST
    cache_hit: str = ""
    eval_slot: int = -1  # index into the evaluated batch
    same_as: int = -1  # index of an earlier child in this batch with the same behaviour
    fec_get: bool = False  # found in the FEC cache at propose time (moved to its end)
    rejection: str = ""  # the evaluator's reason for giving up on it ("" if it did not)
    lr_multipliers: tuple[float, ...] = ()  # the winning multiplier per proxy task


class Search:
    """Regularized evolution (or a baseline) as a resumable, batch-by-batch driver.

    Args:
        config: the search's knobs.
        seed: the warm-start program (default ``seeds.paper_adamw()``); the whole initial
            population is this program.
        rng_seed: seeds the one ``np.random.Generator`` every draw comes from.
        checkpoint: if given, the state is saved there after each batch (see the module doc).
    """

    def __init__(
        self,
        config: EvolutionConfig = EvolutionConfig(),
        seed: Program | None = None,
        *,
        rng_seed: int = 0,
        checkpoint: str | os.PathLike | None = None,
    ):
        self.config = config
        self.seed = seed if seed is not None else seeds.paper_adamw()
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.rng = np.random.default_rng(rng_seed)
        self.population: tuple[Individual, ...] = ()
        self.seed_individual: Individual | None = None
        self._best: Individual | None = None
        self.records: list[CandidateRecord] = []
        self.structural = StructuralCache()
        self.fec = FECCache(max(1, config.fec_cache_size))
        self._rejections: Counter = Counter()
        self._redraws: Counter = Counter()
        self._evaluations = 0
        self._since_improvement = 0
        self._restarts = 0
        self._elapsed = 0.0
        self._pending: list[_Pending] | None = None
        self._batches = 0  # batches told so far
        self._journal: list[dict] = []  # per record: its batch and its cache operations
        self._synced: tuple[Path, int] | None = None  # (records file, lines written there)

    # -- results --

    @property
    def best(self) -> Individual | None:
        """The fittest program so far (the earliest among equals)."""
        return self._best

    @property
    def stats(self) -> SearchStats:
        hits = Counter(r.cache_hit for r in self.records)
        return SearchStats(
            candidates=len(self.records),
            evaluations=self._evaluations,
            structural_hits=hits["structural"],
            fec_hits=hits["fec"],
            rejected=sum(self._rejections.values()),
            rejections=dict(sorted(self._rejections.items())),
            redraws=dict(sorted(self._redraws.items())),
            restarts=self._restarts,
            elapsed_s=self._elapsed,
        )

    # -- one batch --

    def propose(self, max_children: int | None = None) -> list[Program]:
        """Propose the next batch; returns the programs that need an evaluation.

        Rejected children and cache hits are settled here; call :meth:`tell` with the
        fitnesses of the returned programs (in order) to finish the batch.
        """
        if self._pending is not None:
            raise RuntimeError("propose() called twice without tell()")
        if self.seed_individual is None:
            seed = self.seed
            children = [Child(seed, seed.to_text(), "", "seed", 0)]
        else:
            n = self.config.batch_size if max_children is None else max_children
            if n < 1:
                raise ValueError(f"max_children must be >= 1, got {n}")
            children = [
                propose_child(self.population, self.rng, self.config, len(self.seed))
                for _ in range(n)
            ]
        pending: list[_Pending] = []
        to_evaluate: list[Program] = []
        by_hash: dict[str, int] = {}
        by_fp: dict[str, int] = {}
        for child in children:
            p = _Pending(child)
            pending.append(p)
            self._redraws.update(r.value for r in child.redraws)
            if child.program is None:
                continue
            h = child.program.structural_hash()
            if self.config.structural_cache and h in by_hash:
                p.cache_hit, p.same_as = "structural", by_hash[h]
                p.fingerprint = pending[by_hash[h]].fingerprint
                continue
            found = self.structural.get(h) if self.config.structural_cache else None
            if found is not None:
                p.fingerprint, p.fitness = found
                p.cache_hit = "structural"
                continue
            p.fingerprint = self._fingerprint(child.program)
            by_hash[h] = len(pending) - 1
            if self.config.fec_cache_size and p.fingerprint:
                if p.fingerprint in by_fp:
                    p.cache_hit, p.same_as = "fec", by_fp[p.fingerprint]
                    continue
                cached = self.fec.get(p.fingerprint)
                if cached is not None:
                    p.fitness, p.cache_hit, p.fec_get = cached, "fec", True
                    continue
                by_fp[p.fingerprint] = len(pending) - 1
            p.eval_slot = len(to_evaluate)
            to_evaluate.append(child.program)
        self._pending = pending
        return to_evaluate

    def _fingerprint(self, program: Program) -> str:
        if not self.config.fec_cache_size:
            return ""
        try:
            return fingerprint(program, self.config.probe)
        except (ArithmeticError, ValueError):  # never crash on a bad program
            return ""

    def tell(self, fitnesses: Sequence[float | Scored]) -> list[CandidateRecord]:
        """Finish the batch :meth:`propose` started; returns its candidate records.

        A :class:`Scored` in place of a fitness records the evaluator's rejection reason.
        """
        pending = self._pending
        if pending is None:
            raise RuntimeError("tell() called without propose()")
        n_eval = sum(p.eval_slot >= 0 for p in pending)
        if len(fitnesses) != n_eval:
            raise ValueError(f"expected {n_eval} fitnesses, got {len(fitnesses)}")
        self._pending = None
        for p in pending:
            if p.eval_slot >= 0:
                result = fitnesses[p.eval_slot]
                if isinstance(result, Scored):
                    p.fitness, p.rejection = finite_or_worst(result.fitness), result.rejection
                    p.lr_multipliers = tuple(result.lr_multipliers)
                else:
                    p.fitness = finite_or_worst(result)
            elif p.same_as >= 0:
                same = pending[p.same_as]
                p.fitness, p.rejection = same.fitness, same.rejection
                p.lr_multipliers = same.lr_multipliers
            if p.child.program is not None and not p.rejection:
                h = p.child.program.structural_hash()
                if self.config.structural_cache:
                    self.structural.put(h, p.fingerprint, p.fitness)
                if p.eval_slot >= 0 and p.fingerprint and self.config.fec_cache_size:
                    self.fec.put(p.fingerprint, p.fitness)
        self._evaluations += n_eval
        records = [self._record(p, len(self.records) + k) for k, p in enumerate(pending)]
        self.records.extend(records)
        self._journal.extend(
            {"batch": self._batches, "fec_get": p.fec_get,
             "cached": p.child.program is not None and not p.rejection}
            for p in pending
        )
        self._batches += 1
        self._update_population(pending)
        if self.checkpoint is not None:
            self.save(self.checkpoint)
        return records

    def _record(self, p: _Pending, index: int) -> CandidateRecord:
        c = p.child
        rejection = c.rejection or p.rejection
        if rejection:
            self._rejections[rejection] += 1
        return CandidateRecord(
            index=index,
            program=c.text,
            structural_hash=c.program.structural_hash() if c.program is not None else "",
            fingerprint=p.fingerprint,
            parent_hash=c.parent_hash,
            mutation=c.mutation,
            generation=c.generation,
            stage="proxy",
            fitness=p.fitness,
            cache_hit=p.cache_hit,
            rejection=rejection,
            lr_multipliers=p.lr_multipliers,
        )

    def _update_population(self, pending: Sequence[_Pending]) -> None:
        newcomers = [
            Individual(p.child.program, p.fitness, p.child.program.structural_hash(),
                       p.child.generation)
            for p in pending
            if p.child.program is not None
        ]
        if self.seed_individual is None:
            self.seed_individual = newcomers[0]
            self._best = newcomers[0]
            self.population = (newcomers[0],) * self.config.population_size
            return
        self.population = age(self.population, newcomers, self.config.population_size)
        improved = False
        for ind in newcomers:
            if ind.fitness > self._best.fitness:
                self._best, improved = ind, True
        self._since_improvement = 0 if improved else self._since_improvement + len(pending)
        patience, every = self.config.restart_patience, self.config.restart_every
        due = every is not None and len(self.records) // every > (
            len(self.records) - len(pending)
        ) // every
        if (patience is not None and self._since_improvement >= patience) or due:
            self._restart()

    def _restart(self) -> None:
        match self.config.restart_from:
            case RestartFrom.SEED:
                start = self.seed_individual
            case RestartFrom.BEST:
                start = self._best
            case RestartFrom.ALTERNATE:
                start = self.seed_individual if self._restarts % 2 == 0 else self._best
            case _:
                assert_never(self.config.restart_from)
        self.population = (start,) * self.config.population_size
        self._restarts += 1
        self._since_improvement = 0

    def step(self, evaluate: Evaluate, max_children: int | None = None) -> list[CandidateRecord]:
        """Propose a batch, evaluate what needs it, and record it."""
        t0 = time.perf_counter()
        programs = self.propose(max_children)
        fitnesses = list(evaluate(programs)) if programs else []
        self._elapsed += time.perf_counter() - t0
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
        """The state a checkpoint holds, as a JSON-ready dict: everything but the records
        (which live in the records file; ``"records"`` is how many the checkpoint covers)
        and the cache entries (rebuilt from the records on resume)."""
        if self._pending is not None:
            raise RuntimeError("cannot checkpoint between propose() and tell()")
        programs: dict[str, int] = {}  # text -> position (equal hashes may differ in text)

        def ind(i: Individual | None) -> list | None:
            if i is None:
                return None
            k = programs.setdefault(i.program.to_text(), len(programs))
            return [k, i.structural_hash, fitness_to_json(i.fitness), i.generation]

        state = {
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_json(),
            "seed": self.seed.to_text(),
            "rng": self.rng.bit_generator.state,
            "population": [ind(i) for i in self.population],
            "seed_individual": ind(self.seed_individual),
            "best": ind(self._best),
            "records": len(self.records),
            "batches": self._batches,
            "structural_counts": [self.structural.lookups, self.structural.hits],
            "fec_counts": [self.fec.lookups, self.fec.hits],
            "rejections": dict(self._rejections),
            "redraws": dict(self._redraws),
            "evaluations": self._evaluations,
            "since_improvement": self._since_improvement,
            "restarts": self._restarts,
            "elapsed": self._elapsed,
        }
        state["programs"] = list(programs)
        return state

    def _line(self, k: int) -> str:
        r = self.records[k]
        row = {**r.to_dict(), **self._journal[k]}
        return json.dumps(row, allow_nan=False) + "\n"

    def _append_records(self, path: Path) -> None:
        """Bring ``path``'s records file up to date: append what it lacks, then fsync."""
        records = records_path(path)
        done = self._synced[1] if self._synced and self._synced[0] == records else 0
        with open(records, "a" if done else "w", encoding="utf-8") as f:
            f.writelines(self._line(k) for k in range(done, len(self.records)))
            f.flush()
            os.fsync(f.fileno())
        self._synced = (records, len(self.records))

    def save(self, path: str | os.PathLike) -> None:
        """Checkpoint to ``path``: append the new records to its records file (fsync'd),
        then write the rest of the state to a temp file and ``os.replace`` it onto ``path``.

        Costs O(population + new records); a crash at any point leaves a checkpoint that
        :meth:`resume` reads (record lines beyond its count are dropped there).
        """
        path = Path(path)
        state = self.to_json()
        self._append_records(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def resume(
        cls, path: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None
    ) -> Search:
        """The search saved at ``path``, ready to continue; checkpoints go to ``checkpoint``
        (default: ``path`` itself).

        Record lines beyond the checkpoint's count are cut off the records file; the caches
        are rebuilt by replaying each batch's cache operations in order, which gives the
        same entries in the same LRU order as the uninterrupted search.
        """
        path = Path(path)
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        if d.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {d.get('version')!r} is not {CHECKPOINT_VERSION}")
        search = cls(
            EvolutionConfig.from_json(d["config"]),
            Program.parse(d["seed"]),
            checkpoint=path if checkpoint is None else checkpoint,
        )
        search.rng.bit_generator.state = d["rng"]
        parsed: dict[str, Individual] = {}

        def ind(e: list | None) -> Individual | None:
            if e is None:
                return None
            key = json.dumps(e)
            if key not in parsed:
                k, h, fit, gen = e
                parsed[key] = Individual(
                    Program.parse(d["programs"][k]), fitness_from_json(fit), h, gen
                )
            return parsed[key]

        search.population = tuple(ind(e) for e in d["population"])
        search.seed_individual = ind(d["seed_individual"])
        search._best = ind(d["best"])
        rows = _read_records(records_path(path), d["records"])
        names = [f.name for f in fields(CandidateRecord)]
        search.records = [
            CandidateRecord(**{k: row[k] for k in names if k in row}
                            | {"fitness": fitness_from_json(row["fitness"]),
                               "lr_multipliers": tuple(row.get("lr_multipliers", ()))})
            for row in rows
        ]
        search._journal = [
            {"batch": row["batch"], "fec_get": row["fec_get"], "cached": row["cached"]}
            for row in rows
        ]
        search._replay_caches()
        search.structural.lookups, search.structural.hits = d["structural_counts"]
        search.fec.lookups, search.fec.hits = d["fec_counts"]
        search._batches = d["batches"]
        search._rejections = Counter(d["rejections"])
        search._redraws = Counter(d["redraws"])
        search._evaluations = d["evaluations"]
        search._since_improvement = d["since_improvement"]
        search._restarts = d["restarts"]
        search._elapsed = d["elapsed"]
        if search.checkpoint == path:
            search._synced = (records_path(path), len(search.records))
        return search

    def _replay_caches(self) -> None:
        """The caches' state from the records: per batch, the FEC lookups that hit (at
        propose time), then the puts of :meth:`tell`, in candidate order."""
        structural, fec = self.config.structural_cache, self.config.fec_cache_size > 0
        k, n = 0, len(self.records)
        while k < n:
            end = k
            while end < n and self._journal[end]["batch"] == self._journal[k]["batch"]:
                end += 1
            for j in range(k, end):
                if self._journal[j]["fec_get"]:
                    self.fec.get(self.records[j].fingerprint)
            for j in range(k, end):
                r = self.records[j]
                if not self._journal[j]["cached"]:
                    continue
                if structural:
                    self.structural.put(r.structural_hash, r.fingerprint, r.fitness)
                if fec and not r.cache_hit and r.fingerprint:
                    self.fec.put(r.fingerprint, r.fitness)
            k = end


def records_path(checkpoint: str | os.PathLike) -> Path:
    """The records file of a checkpoint: ``search.json`` -> ``search.records.jsonl``."""
    p = Path(checkpoint)
    return p.with_name(p.stem + ".records.jsonl")


def _read_records(path: Path, count: int) -> list[dict]:
    """The first ``count`` lines of a records file, parsed; lines beyond them (written after
    the checkpoint was last replaced) are cut off the file."""
    rows: list[dict] = []
    if count == 0 and not path.exists():
        return rows
    with open(path, "rb+") as f:
        for _ in range(count):
            line = f.readline()
            if not line.endswith(b"\n"):
                raise ValueError(f"{path} holds fewer than the {count} records its checkpoint "
                                 "covers")
            rows.append(json.loads(line))
        if f.read(1):
            f.truncate(f.tell() - 1)
            f.flush()
            os.fsync(f.fileno())
    return rows


def with_mutation(config: EvolutionConfig, **changes) -> EvolutionConfig:
    """``config`` with some fields of its mutation config replaced."""
    return replace(config, mutation=replace(config.mutation, **changes))
