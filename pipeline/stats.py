"""A search's statistics, counted once: the search keeps one :class:`SearchStats`, the
tracker and the flows read it.

Everything a candidate record says (hits, rejections, evaluations, best, worst fitness per
reason) is counted from the records as they are told, by :meth:`SearchStats.count`; what the
records do not hold (mutation redraws, restarts, wall time) the search adds itself.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.fitness import WORST
from pipeline.records import CandidateRecord

__all__ = ["SearchStats"]


@dataclass
class SearchStats:
    """Counts over all candidates so far. Rates are fractions of all candidates.

    Attributes:
        candidates: candidates told so far.
        evaluations: those that went to the evaluator (``CandidateRecord.evaluated``).
        structural_hits: those settled by the structural cache (or an in-batch twin).
        fec_hits: those settled by the FEC cache (or an in-batch twin).
        rejected: those rejected by abstract execution or the evaluator.
        rejections: rejected candidates per reason.
        worst: candidates with the worst fitness per reason (``CandidateRecord.reason``).
        best: the best finite fitness so far (``WORST`` when none).
        redraws: mutation redraws per rejection reason.
        restarts: population restarts.
        elapsed_s: seconds spent in ``Search.step`` (proposing, evaluating, recording).
    """

    candidates: int = 0
    evaluations: int = 0
    structural_hits: int = 0
    fec_hits: int = 0
    rejected: int = 0
    rejections: Counter = field(default_factory=Counter)
    worst: Counter = field(default_factory=Counter)
    best: float = WORST
    redraws: Counter = field(default_factory=Counter)
    restarts: int = 0
    elapsed_s: float = 0.0

    def count(self, records: Iterable[CandidateRecord]) -> None:
        """Add ``records`` (candidates not counted before) to the counts."""
        for r in records:
            self.candidates += 1
            self.evaluations += r.evaluated
            self.structural_hits += r.cache_hit == "structural"
            self.fec_hits += r.cache_hit == "fec"
            if r.rejection:
                self.rejected += 1
                self.rejections[r.rejection] += 1
            if math.isfinite(r.fitness):
                self.best = max(self.best, r.fitness)
            else:
                self.worst[r.reason] += 1

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
    def rejection_rate(self) -> float:
        return self.rejected / max(1, self.candidates)

    @property
    def evaluations_saved(self) -> int:
        return self.structural_hits + self.fec_hits

    @property
    def candidates_per_s(self) -> float:
        return self.candidates / self.elapsed_s if self.elapsed_s > 0 else math.nan
