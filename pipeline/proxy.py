"""The proxy fitness: what the search optimises, step-size invariant and in units of noise.

A search optimises exactly what its fitness rewards (DESIGN.md §3), so this is where the
fitness is defined:

* **Step-size invariant.** A program is trained at ``K`` learning-rate multipliers ``c``
  (``lr * c``; the ``K`` copies are members of the same batched call, and hurdles stop bad
  copies early); on each task its score is the best of the ``K``, as a user would tune it.
  A mutant that only rescales the step then gains nothing over its parent.
* **Several tasks.** With more than one task each task's best is normalised against the warm
  start on that task, ``z = (f - mean) / std`` over the warm start's init seeds (its
  :class:`Calibration`), so a task counts in units of its own seed-to-seed noise; the ``z``
  are combined by the median (AutoML-Zero) or the mean. With one task the fitness is the raw
  metric (higher is better), so it reads in the task's own units.
* **Known noise.** :func:`calibrate` scores the warm start on several init seeds; its spread
  (:attr:`Calibration.noise`, in fitness units) is what a difference must exceed to count,
  and the simplifier's tolerance is a fraction of it.

Scoring goes through an ``evaluate(programs, task, scale, seed) -> fitnesses`` function (the
batched TF evaluator in flows; NumPy tasks in tests).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pipeline.fitness import WORST, finite_or_worst, mean_or_worst, spread
from pipeline.program import Program

__all__ = [
    "COMBINE",
    "Calibration",
    "Proxy",
    "ProxyScore",
    "Tuned",
    "calibrate",
    "score",
    "tune",
]

# programs, task name, scale, init seed -> fitnesses (higher is better), in order
TaskEvaluate = Callable[[Sequence[Program], str, float, int], Sequence[float]]

COMBINE: dict[str, Callable[[Sequence[float]], float]] = {
    "median": statistics.median,  # AutoML-Zero: a rule that exploits one task's quirk loses
    "mean": statistics.fmean,
}
CALIBRATION_SEEDS = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class Calibration:
    """The warm start's proxy scores over init seeds: the noise every comparison is read in.

    Attributes:
        program: the warm start's text.
        seeds: the init seeds (the search itself trains with the proxy's ``seed``).
        per_task: ``[task][seed]``: the warm start's best-of-K metric on each task.
    """

    program: str
    seeds: tuple[int, ...]
    per_task: tuple[tuple[float, ...], ...]

    @property
    def means(self) -> tuple[float, ...]:
        return tuple(statistics.fmean(xs) for xs in self.per_task)

    @property
    def stds(self) -> tuple[float, ...]:
        """Seed-to-seed standard deviation per task (never 0: a floor keeps z finite)."""
        return tuple(max(statistics.stdev(xs), 1e-9 * max(1.0, abs(statistics.fmean(xs))))
                     for xs in self.per_task)

    def to_json(self) -> dict:
        return {"program": self.program, "seeds": list(self.seeds),
                "per_task": [list(xs) for xs in self.per_task]}

    @classmethod
    def from_json(cls, d: dict) -> Calibration:
        return cls(d["program"], tuple(d["seeds"]), tuple(tuple(xs) for xs in d["per_task"]))


@dataclass(frozen=True)
class Proxy:
    """The proxy fitness (see the module doc).

    Attributes:
        tasks: task names (``pipeline.tasks.TASKS``); one, or several of different kinds.
        scale: the tasks' scale (1: the proxy sizes written beside each task).
        seed: the init and data-order seed the search trains with.
        n_seeds: init seeds averaged per candidate (``seed`` .. ``seed + n_seeds - 1``): a
            task's metric at a multiplier is the mean over them, which cuts the fitness's
            seed noise by about ``sqrt(n_seeds)`` for ``n_seeds`` x the training.
        lr_multipliers: the ``K`` multipliers of each task's own ``learning_rate`` (AdamW's
            tuned rate there); a program's score on a task is its best over them.
        combine: how several tasks' normalised scores combine: ``median`` or ``mean``.
        calibration: the warm start's scores over seeds (:func:`calibrate`); needed to
            combine several tasks and to know the noise.
    """

    tasks: tuple[str, ...] = ("teacher",)
    scale: float = 1.0
    seed: int = 0
    lr_multipliers: tuple[float, ...] = (0.0625, 0.25, 1.0, 4.0)
    combine: str = "median"
    calibration: Calibration | None = None
    n_seeds: int = 1

    def __post_init__(self) -> None:
        from pipeline.tasks import TASKS

        if isinstance(self.tasks, str):
            object.__setattr__(self, "tasks", (self.tasks,))
        if not self.tasks:
            raise ValueError("Proxy.tasks must name at least one task. Received: ()")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"Proxy.tasks: unknown task(s) {unknown}; known: {sorted(TASKS)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"Proxy.tasks names a task twice. Received: {self.tasks}")
        if not self.lr_multipliers:
            raise ValueError("Proxy.lr_multipliers must hold at least one multiplier (K >= 1). "
                             "Received: ()")
        bad = [c for c in self.lr_multipliers if not (math.isfinite(c) and c > 0)]
        if bad:
            raise ValueError(f"Proxy.lr_multipliers must be finite and > 0. Received: {bad}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Proxy.scale must be > 0. Received: {self.scale}")
        if isinstance(self.n_seeds, bool) or not isinstance(self.n_seeds, int) \
                or self.n_seeds < 1:
            raise ValueError(f"Proxy.n_seeds must be an integer >= 1. Received: {self.n_seeds!r}")
        if self.combine not in COMBINE:
            raise ValueError(f"Proxy.combine must be one of {sorted(COMBINE)}. "
                             f"Received: {self.combine!r}")
        cal = self.calibration
        if cal is not None and len(cal.per_task) != len(self.tasks):
            raise ValueError("Proxy.calibration does not match Proxy.tasks")

    @property
    def noise(self) -> float | None:
        """The seed-to-seed standard deviation of the warm start's proxy fitness (None
        before :func:`calibrate`)."""
        cal = self.calibration
        if cal is None:
            return None
        values = [self.combined([xs[k] for xs in cal.per_task]) for k in range(len(cal.seeds))]
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) < 2:
            return math.inf
        return statistics.stdev(finite)

    def combined(self, per_task: Sequence[float]) -> float:
        """The fitness of a program whose best-of-K metric on each task is ``per_task``."""
        if len(self.tasks) == 1:
            return finite_or_worst(per_task[0])
        if self.calibration is None:
            raise ValueError("a proxy of several tasks needs a calibration to combine them "
                             "(pipeline.proxy.calibrate)")
        if not all(math.isfinite(f) for f in per_task):
            return WORST  # diverged on some task: worst, not a median that hides it
        z = [(f - m) / s for f, m, s in zip(per_task, self.calibration.means,
                                             self.calibration.stds, strict=True)]
        return finite_or_worst(COMBINE[self.combine](z))

    def to_json(self) -> dict:
        return {"tasks": list(self.tasks), "scale": self.scale, "seed": self.seed,
                "lr_multipliers": list(self.lr_multipliers), "combine": self.combine,
                "calibration": self.calibration.to_json() if self.calibration else None,
                # written only when set, so run dirs and batch caches made before the field
                # existed still match a default proxy
                **({"n_seeds": self.n_seeds} if self.n_seeds != 1 else {})}

    @classmethod
    def from_json(cls, d: dict) -> Proxy:
        cal = d.get("calibration")
        return cls(tuple(d["tasks"]), d["scale"], d["seed"], tuple(d["lr_multipliers"]),
                   d["combine"], Calibration.from_json(cal) if cal else None,
                   d.get("n_seeds", 1))


@dataclass(frozen=True)
class ProxyScore:
    """A program's proxy fitness, with each task's best metric and the multiplier that won."""

    fitness: float
    per_task: tuple[float, ...]
    lr_multipliers: tuple[float, ...]


def score_task(programs: Sequence[Program], task: str, proxy: Proxy, evaluate: TaskEvaluate,
               seed: int | None = None) -> list[tuple[float, float]]:
    """Per program: (best metric over the multipliers, the multiplier that gave it), on
    ``task``. The metric at a multiplier is the mean over the proxy's ``n_seeds`` init seeds
    from ``seed`` (default: the proxy's ``seed``); one evaluate call per init seed for all
    copies."""
    mults = proxy.lr_multipliers
    copies = [p.with_lr_scale(c) for p in programs for c in mults]
    first = proxy.seed if seed is None else seed
    runs = [[finite_or_worst(float(f)) for f in evaluate(copies, task, proxy.scale, s)]
            for s in range(first, first + proxy.n_seeds)]
    scores = [statistics.fmean(xs) for xs in zip(*runs, strict=True)]  # -inf stays -inf
    out = []
    for i in range(len(programs)):
        row = scores[i * len(mults):(i + 1) * len(mults)]
        j = max(range(len(mults)), key=lambda k: (row[k], -abs(math.log(mults[k]))))
        out.append((row[j], mults[j]))
    return out


def score(programs: Sequence[Program], proxy: Proxy, evaluate: TaskEvaluate
          ) -> list[ProxyScore]:
    """Every program's proxy fitness (see the module doc)."""
    per_task = [score_task(programs, t, proxy, evaluate) for t in proxy.tasks]
    out = []
    for i in range(len(programs)):
        best = tuple(pt[i][0] for pt in per_task)
        out.append(ProxyScore(proxy.combined(best), best, tuple(pt[i][1] for pt in per_task)))
    return out


@dataclass(frozen=True)
class Tuned:
    """A program tuned on a learning-rate grid: the best mean over seeds and where it was."""

    mean: float
    std: float
    multiplier: float
    at_edge: bool  # the best multiplier is the smallest or largest tried


def tune(programs: Sequence[Program], task: str, evaluate: TaskEvaluate,
         multipliers: Sequence[float], seeds: Sequence[int], scale: float = 1.0,
         max_extend: int = 0) -> list[Tuned]:
    """Each program at every multiplier of the task's rate, on every seed (one evaluate call
    per seed): its best mean over seeds, the seed spread there, and whether that best is at
    an edge of the grid (then a wider grid may do better).

    With ``max_extend`` > 0 the programs whose best is at an edge are also tried that many
    steps past it (a step: the ratio of the two multipliers at that edge), all in one more
    call per seed and side; a row keeps the better best and is at an edge only if that is the
    outermost multiplier tried."""
    mults = sorted(multipliers)
    out = _tune_grid(programs, task, evaluate, mults, seeds, scale)
    if max_extend < 1 or len(mults) < 2:
        return out
    for edge, step in ((mults[0], mults[0] / mults[1]), (mults[-1], mults[-1] / mults[-2])):
        at = [i for i, r in enumerate(out) if r.at_edge and r.multiplier == edge]
        if not at:
            continue
        more = [edge * step ** k for k in range(1, max_extend + 1)]
        rows = _tune_grid([programs[i] for i in at], task, evaluate, more, seeds, scale)
        for i, r in zip(at, rows, strict=True):
            out[i] = (replace(r, at_edge=r.multiplier == more[-1]) if r.mean > out[i].mean
                      else replace(out[i], at_edge=False))  # the edge beat what lies past it
    return out


def _tune_grid(programs: Sequence[Program], task: str, evaluate: TaskEvaluate,
               mults: Sequence[float], seeds: Sequence[int], scale: float) -> list[Tuned]:
    copies = [p.with_lr_scale(c) for p in programs for c in mults]
    runs = [[finite_or_worst(float(f)) for f in evaluate(copies, task, scale, s)] for s in seeds]
    out = []
    for i in range(len(programs)):
        per_mult = [[run[i * len(mults) + j] for run in runs] for j in range(len(mults))]
        means = [mean_or_worst(xs) for xs in per_mult]
        j = max(range(len(mults)), key=lambda k: means[k])
        at_edge = len(mults) > 1 and j in (0, len(mults) - 1)
        out.append(Tuned(means[j], spread(per_mult[j]), mults[j], at_edge))
    return out


def calibrate(proxy: Proxy, program: Program, evaluate: TaskEvaluate,
              seeds: Sequence[int] = CALIBRATION_SEEDS) -> Proxy:
    """``proxy`` with the calibration of ``program`` (the warm start) over init ``seeds``.

    With ``n_seeds`` > 1 each calibration seed ``s`` is the fitness averaged over its own
    block of init seeds, ``s * n_seeds`` .. ``s * n_seeds + n_seeds - 1`` (blocks do not
    overlap), so the noise measured is that of the averaged fitness the search uses."""
    if len(seeds) < 2:
        raise ValueError(f"calibration needs at least 2 seeds to measure noise. Received: {seeds}")
    n = proxy.n_seeds
    per_task = tuple(
        tuple(score_task([program], t, proxy, evaluate, seed=s * n)[0][0] for s in seeds)
        for t in proxy.tasks
    )
    return replace(proxy, calibration=Calibration(program.to_text(), tuple(seeds), per_task))
