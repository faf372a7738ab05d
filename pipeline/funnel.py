"""The funnel: proxy winners must hold up on larger tasks before one is called the winner.

As in the Lion paper: the top-k distinct programs of a search (by proxy fitness) are scored
on stage B (about 10x the proxy) with several seeds; only those that beat the AdamW baseline,
scored the same way, go on to stage C (about 100x); the winner is the best on C. Every program,
the baseline included, gets the same small learning-rate treatment (multipliers of its own
scale, ``lr = lr * c``), so nothing is rejected for a bad scale alone.

Scoring goes through an ``evaluate(programs, stage, seed) -> fitnesses`` function (higher is
better), so the funnel runs on the batched TF evaluator in flows and on NumPy tasks in tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pipeline.fitness import finite_or_worst, mean_or_worst, spread
from pipeline.program import Program
from pipeline.seeds import adamw

__all__ = ["FunnelResult", "FunnelRow", "Stage", "run_funnel", "score_stage", "top_k_distinct",
           "top_k_of_records"]

Evaluate = Callable[[Sequence[Program], "Stage", int], Sequence[float]]


@dataclass(frozen=True)
class Stage:
    """One funnel stage: a task at a scale (e.g. ``Stage("B", "digits_mlp", 10)``)."""

    name: str
    task: str
    scale: float = 1.0


@dataclass(frozen=True)
class FunnelRow:
    """One program on one stage, at its best learning-rate multiplier."""

    program: str
    structural_hash: str
    stage: str
    is_baseline: bool
    lr_multiplier: float
    per_seed: tuple[float, ...]
    mean: float
    std: float
    beat_baseline: bool

    def to_dict(self) -> dict:
        return {
            "program": self.program,
            "structural_hash": self.structural_hash,
            "stage": self.stage,
            "is_baseline": self.is_baseline,
            "lr_multiplier": self.lr_multiplier,
            "per_seed": list(self.per_seed),
            "mean": self.mean,
            "std": self.std,
            "beat_baseline": self.beat_baseline,
        }


@dataclass(frozen=True)
class FunnelResult:
    rows: tuple[FunnelRow, ...]
    winner: Program | None  # best on the last stage among those that passed every gate
    winner_lr_multiplier: float
    best_effort: Program | None  # best non-baseline program on the first stage

    def table(self) -> list[dict]:
        return [r.to_dict() for r in self.rows]

    @property
    def beat_baseline(self) -> bool:
        """Whether the winner also beat the baseline on the last stage (where nothing gates:
        the winner is the best finalist, which may still lose to the baseline there)."""
        if self.winner is None:
            return False
        h = self.winner.structural_hash()
        last = self.rows[-1].stage
        return any(r.beat_baseline for r in self.rows
                   if r.stage == last and not r.is_baseline and r.structural_hash == h)

    def format(self, labels: Mapping[str, str] | None = None) -> str:
        """A plain-text table; ``labels`` maps a program's text to the name shown (default:
        ``baseline`` or the first 8 characters of its structural hash)."""
        names = [(labels or {}).get(r.program) or
                 ("baseline" if r.is_baseline else r.structural_hash[:8]) for r in self.rows]
        w = max([10, *map(len, names)])
        lines = [f"{'stage':<6} {'program':<{w}} {'lr x':>6} {'mean':>10} {'std':>9} "
                 f"{'beats':>6}"]
        for r, name in zip(self.rows, names, strict=True):
            mult = (f"{r.lr_multiplier:>6.3g}" if Program.parse(r.program).reads_lr
                    else f"{'-':>6}")  # never reads lr: every multiplier trains the same
            lines.append(f"{r.stage:<6} {name:<{w}} {mult} {r.mean:>10.4f} "
                         f"{r.std:>9.4f} {('yes' if r.beat_baseline else 'no'):>6}")
        return "\n".join(lines)


def top_k_distinct(scored: Sequence[tuple[Program, float]], k: int) -> list[Program]:
    """The ``k`` best programs by fitness, one per structural hash (dataflow)."""
    out: list[Program] = []
    seen: set[str] = set()
    for program, fitness in sorted(scored, key=lambda pf: -finite_or_worst(pf[1])):
        h = program.structural_hash()
        if h not in seen and math.isfinite(fitness):
            seen.add(h)
            out.append(program)
            if len(out) == k:
                break
    return out


def top_k_of_records(records: Iterable, k: int) -> list[Program]:
    """The ``k`` best distinct programs a search scored: its candidate records (``program``
    text, ``fitness``, ``rejection``) that were not rejected and scored finite."""
    scored: dict[str, float] = {}
    for r in records:
        if not r.rejection and math.isfinite(r.fitness) and r.program not in scored:
            scored[r.program] = r.fitness
    return top_k_distinct([(Program.parse(t), f) for t, f in scored.items()], k)


def score_stage(
    programs: Sequence[Program],
    stage: Stage,
    evaluate: Evaluate,
    seeds: Sequence[int],
    multipliers: Sequence[float],
) -> list[tuple[float, tuple[float, ...]]]:
    """Per program: (best multiplier, per-seed scores there). One evaluate call per seed."""
    variants = [p.with_lr_scale(c) for p in programs for c in multipliers]
    by_seed = [list(evaluate(variants, stage, seed)) for seed in seeds]
    out = []
    for i in range(len(programs)):
        options = []
        for j, c in enumerate(multipliers):
            k = i * len(multipliers) + j
            scores = tuple(float(s[k]) for s in by_seed)
            options.append((mean_or_worst(scores), c, scores))
        best = max(options, key=lambda o: o[0])
        out.append((best[1], best[2]))
    return out


def run_funnel(
    candidates: Sequence[Program],
    stages: Sequence[Stage],
    evaluate: Evaluate,
    *,
    baseline: Program | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    lr_multipliers: Sequence[float] = (1 / 3, 1.0, 3.0),
) -> FunnelResult:
    """Score ``candidates`` (already the proxy's top-k) through ``stages`` against a baseline.

    A program goes on from a stage only if its mean beats the baseline's mean there; the
    winner is the best on the last stage among those that got there (None if none did).
    """
    if not stages:
        raise ValueError("Argument `stages` must name at least one stage. Received: []")
    baseline = baseline if baseline is not None else adamw()
    alive = list(dict.fromkeys(candidates))
    rows: list[FunnelRow] = []
    last: list[tuple[Program, float, float]] = []  # (program, mean, multiplier) on last stage
    best_effort = None
    for n, stage in enumerate(stages):
        if not alive:
            break
        scored = score_stage([baseline, *alive], stage, evaluate, seeds, lr_multipliers)
        base_mult, base_scores = scored[0]
        base_mean = mean_or_worst(base_scores)
        rows.append(_row(baseline, stage, base_mult, base_scores, True, False))
        passed = []
        results = []
        for program, (mult, scores) in zip(alive, scored[1:], strict=True):
            beat = mean_or_worst(scores) > base_mean
            rows.append(_row(program, stage, mult, scores, False, beat))
            results.append((program, mean_or_worst(scores), mult))
            if beat:
                passed.append(program)
        if n == 0 and results:
            best_effort = max(results, key=lambda r: r[1])[0]
        last = results
        if n < len(stages) - 1:
            alive = passed
    # If a gate emptied `alive`, the loop stopped early and nobody reached the last stage.
    finalists = [r for r in last if math.isfinite(r[1])] if alive else []
    winner, winner_mult = None, 1.0
    if finalists:
        winner, _, winner_mult = max(finalists, key=lambda r: r[1])
    return FunnelResult(tuple(rows), winner, winner_mult, best_effort)


def _row(program, stage, mult, scores, is_baseline, beat) -> FunnelRow:
    return FunnelRow(
        program=program.to_text(),
        structural_hash=program.structural_hash(),
        stage=stage.name,
        is_baseline=is_baseline,
        lr_multiplier=mult,
        per_seed=tuple(scores),
        mean=mean_or_worst(scores),
        std=spread(scores),
        beat_baseline=beat,
    )
