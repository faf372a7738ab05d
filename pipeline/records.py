"""The per-candidate record: what the search knows about each program it proposed.

The search engine produces these, the tracker logs them (one row each in the MLflow
candidates table), checkpoints store them. Keep it flat and JSON-friendly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["CandidateRecord"]


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
        """True when this candidate cost an evaluation (not rejected, not a cache hit)."""
        return not self.cache_hit and not self.rejection

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lr_multipliers"] = list(self.lr_multipliers)
        if not math.isfinite(d["fitness"]):
            d["fitness"] = None if math.isnan(d["fitness"]) else d["fitness"]
        return d
