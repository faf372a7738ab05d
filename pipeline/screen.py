"""The screen in front of the evaluator: only programs whose fitness is not known yet pass.

A batch of proposed programs goes through, in order:

1. in-batch dedupe and the structural cache (same dataflow as an earlier program);
2. the functional-equivalence (FEC) cache and in-batch dedupe of fingerprints (same
   behaviour on the probe, ``pipeline.cache``).

:meth:`Screen.screen` settles the hits and returns the programs to evaluate;
:meth:`Screen.settle` takes the evaluator's results (fitnesses or :class:`Verdict`) for
them, gives in-batch duplicates their twin's result and puts the new fitnesses in the caches
(never a verdict with a reason: the program may do better in another batch).

The screen persists itself through the search's records file: ``Screen.notes`` holds, per
candidate settled, its columns there (its batch, whether it hit the FEC cache at screening
time, whether its fitness was cached), :meth:`Screen.to_json` the counters for the
checkpoint, and :meth:`Screen.restore` rebuilds the caches from both, in the same LRU order
as the screen that wrote them. The entries themselves are never written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.cache import FECCache, Probe, StructuralCache, fingerprint
from pipeline.fitness import WORST, finite_or_worst
from pipeline.program import Program
from pipeline.records import CandidateRecord

__all__ = ["Evaluate", "Screen", "Screened", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """An evaluator's result with its detail, in place of a bare fitness.

    ``fitness`` is the score, ``lr_multipliers`` the learning-rate multiplier that won on
    each proxy task (``pipeline.proxy``). ``rejection`` is non-empty when the evaluator gave
    up on the program (e.g. ``"timeout"``): the fitness is then the worst and the result is
    recorded but never cached.
    """

    fitness: float = WORST
    rejection: str = ""
    lr_multipliers: tuple[float, ...] = ()


# Programs -> per program a fitness (higher is better) or a Verdict.
Evaluate = Callable[[Sequence[Program]], Sequence["float | Verdict"]]


@dataclass
class Screened:
    """One candidate's way through the screen (``program`` None: rejected before it)."""

    program: Program | None
    fingerprint: str = ""
    fitness: float = WORST
    cache_hit: str = ""  # "", "structural" or "fec"
    eval_slot: int = -1  # index into the programs sent to the evaluator
    same_as: int = -1  # index of an earlier candidate in this batch with the same result
    fec_get: bool = False  # found in the FEC cache at screening time (moved to its end)
    rejection: str = ""  # the evaluator's reason for giving up on it ("" if it did not)
    lr_multipliers: tuple[float, ...] = ()

    @property
    def cached(self) -> bool:
        """Whether its fitness went into the caches."""
        return self.program is not None and not self.rejection


class Screen:
    """The structural and FEC caches with the batch logic around them.

    Args:
        structural: use the structural (dataflow hash) cache.
        fec_cache_size: entries of the FEC LRU cache (0: no FEC, no fingerprints).
        probe: the fixed inputs of FEC fingerprints.
    """

    def __init__(self, structural: bool, fec_cache_size: int, probe: Probe):
        self.use_structural, self.fec_size, self.probe = structural, fec_cache_size, probe
        self.structural = StructuralCache()
        self.fec = FECCache(max(1, fec_cache_size))
        self.batches = 0  # batches settled so far
        self.notes: list[dict] = []  # per candidate settled, what restore() needs

    def screen(self, programs: Sequence[Program | None]) -> tuple[list[Screened], list[Program]]:
        """Settle the cache hits of a batch; returns every candidate's :class:`Screened` and
        the programs the evaluator has to score (in the order :meth:`settle` expects)."""
        batch: list[Screened] = []
        to_evaluate: list[Program] = []
        by_hash: dict[str, int] = {}
        by_fp: dict[str, int] = {}
        for program in programs:
            s = Screened(program)
            batch.append(s)
            if program is None:
                continue
            h = program.structural_hash()
            if self.use_structural and h in by_hash:
                s.cache_hit, s.same_as = "structural", by_hash[h]
                s.fingerprint = batch[by_hash[h]].fingerprint
                continue
            found = self.structural.get(h) if self.use_structural else None
            if found is not None:
                s.fingerprint, s.fitness = found
                s.cache_hit = "structural"
                continue
            s.fingerprint = self._fingerprint(program)
            by_hash[h] = len(batch) - 1
            if self.fec_size and s.fingerprint:
                if s.fingerprint in by_fp:
                    s.cache_hit, s.same_as = "fec", by_fp[s.fingerprint]
                    continue
                cached = self.fec.get(s.fingerprint)
                if cached is not None:
                    s.fitness, s.cache_hit, s.fec_get = cached, "fec", True
                    continue
                by_fp[s.fingerprint] = len(batch) - 1
            s.eval_slot = len(to_evaluate)
            to_evaluate.append(program)
        return batch, to_evaluate

    def _fingerprint(self, program: Program) -> str:
        if not self.fec_size:
            return ""
        try:
            return fingerprint(program, self.probe)
        except (ArithmeticError, ValueError):  # never crash on a bad program
            return ""

    def settle(self, batch: Sequence[Screened], results: Sequence[float | Verdict]) -> None:
        """Fill in the results of :meth:`screen`'s programs (in order) and cache them."""
        n_eval = sum(s.eval_slot >= 0 for s in batch)
        if len(results) != n_eval:
            raise ValueError(f"expected {n_eval} fitnesses, got {len(results)}")
        for s in batch:
            if s.eval_slot >= 0:
                result = results[s.eval_slot]
                if isinstance(result, Verdict):
                    s.fitness, s.rejection = finite_or_worst(result.fitness), result.rejection
                    s.lr_multipliers = tuple(result.lr_multipliers)
                else:
                    s.fitness = finite_or_worst(result)
            elif s.same_as >= 0:
                same = batch[s.same_as]
                s.fitness, s.rejection = same.fitness, same.rejection
                s.lr_multipliers = same.lr_multipliers
            if s.cached:
                self._put(s.program.structural_hash(), s.fingerprint, s.fitness,
                          fec=s.eval_slot >= 0)
        self.notes.extend({"batch": self.batches, "fec_get": s.fec_get, "cached": s.cached}
                          for s in batch)
        self.batches += 1

    def _put(self, structural_hash: str, fp: str, fitness: float, *, fec: bool) -> None:
        if self.use_structural:
            self.structural.put(structural_hash, fp, fitness)
        if fec and fp and self.fec_size:
            self.fec.put(fp, fitness)

    # -- persistence --

    def to_json(self) -> dict:
        """The checkpoint's part of the screen: the batch count and the caches' counters
        (the entries are rebuilt from the records and their notes)."""
        return {
            "batches": self.batches,
            "structural_counts": [self.structural.lookups, self.structural.hits],
            "fec_counts": [self.fec.lookups, self.fec.hits],
        }

    def restore(
        self, state: dict, records: Sequence[CandidateRecord], notes: Sequence[dict]
    ) -> None:
        """Rebuild an empty screen from :meth:`to_json` and the records with their notes:
        per batch, the FEC hits of screening time, then the puts of
        :meth:`settle` in candidate order, as they happened."""
        k, n = 0, len(records)
        while k < n:
            end = k
            while end < n and notes[end]["batch"] == notes[k]["batch"]:
                end += 1
            for j in range(k, end):
                if notes[j]["fec_get"]:
                    self.fec.get(records[j].fingerprint)
            for j in range(k, end):
                r = records[j]
                if notes[j]["cached"]:
                    self._put(r.structural_hash, r.fingerprint, r.fitness, fec=not r.cache_hit)
            k = end
        self.structural.lookups, self.structural.hits = state["structural_counts"]
        self.fec.lookups, self.fec.hits = state["fec_counts"]
        self.batches = state["batches"]
        self.notes = list(notes)
