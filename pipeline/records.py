"""The per-candidate record: what the search knows about each program it proposed.

The search engine produces these, the tracker logs them (one row each in the MLflow
candidates table), checkpoints store them. Keep it flat and JSON-friendly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from pipeline.fitness import to_json as fitness_to_json

__all__ = ["DIVERGED", "CandidateRecord"]

# The reason of a worst fitness the evaluator gave without one: evaluators score worst only a
# run that blew up, its loss or parameters NaN/inf or huge (a cache hit repeats its verdict).
DIVERGED = "diverged"


@dataclass(frozen=True)
class CandidateRecord:
    """One proposed candidate.

    Attributes:
        index: 0-based position in the search's sequence of candidates.
        program: the program text.
        structural_hash: ``Program.structural_hash()``.
        fingerprint: the functional-equivalence fingerprint ("" if not computed, e.g. rejected).
        parent_hash: the parent's structural hash ("" for a seed or a random program).
        mutation: the mutation kind's name ("seed", "random", ... for non-mutants).
        generation: the number of mutations between this program and its seed.
        stage: where it was scored ("proxy", "funnel_b", ...).
        fitness: higher is better; ``-inf`` when rejected, diverged or failed.
        cache_hit: "" (evaluated), "structural" or "fec".
        rejection: why abstract execution or the evaluator rejected it ("" if it did not).
        lr_multipliers: per proxy task, the learning-rate multiplier at which it scored
            best (empty for a rejection or a hit of the caches of an earlier batch).
    """

    index: int
    program: str
    structural_hash: str
    fingerprint: str
    parent_hash: str
    mutation: str
    generation: int
    stage: str
    fitness: float
    cache_hit: str = ""
    rejection: str = ""
    lr_multipliers: tuple[float, ...] = ()

    @property
    def evaluated(self) -> bool:
        """True when this candidate went to the evaluator: it passed abstract execution (it
        has a structural hash) and hit no cache. One the evaluator then gave up on (a
        timeout) counts: it cost the evaluation, as in ``SearchStats.evaluations``."""
        return not self.cache_hit and bool(self.structural_hash)

    @property
    def reason(self) -> str:
        """Why this candidate has the worst fitness ("" when its fitness is finite): the
        rejection (abstract execution's, or the evaluator's such as "timeout"), else
        :data:`DIVERGED`."""
        if self.rejection:
            return self.rejection
        return "" if math.isfinite(self.fitness) else DIVERGED

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lr_multipliers"] = list(self.lr_multipliers)
        d["fitness"] = fitness_to_json(self.fitness)
        return d
