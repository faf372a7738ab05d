"""Figures for the tracker: each takes plain data and returns a matplotlib ``Figure``.

Figures are built as plain ``matplotlib.figure.Figure`` objects (no pyplot, no global backend
switch, no display needed; saving renders with Agg). The caller logs the figure
(``Tracker.log_figure``) and closes it. Nothing here touches MLflow, so each plot is testable
on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

__all__ = ["LineageStep", "display_name", "fitness_over_candidates", "funnel", "lineage",
           "loss_curves", "robust_limits"]

# How figures name the optimizers the pipeline knows by key (``pipeline.seeds.SEEDS``, Keras
# built-ins in the benchmark); any other name is shown as it is.
_NAMES = {"adamw": "AdamW", "paper_adamw": "AdamW (paper)", "lion": "Lion",
          "sgd_momentum": "SGD-momentum", "rmsprop": "RMSprop", "signsgd": "signSGD",
          "adam": "Adam", "sgd": "SGD"}
# pipeline.benchmark.KERAS_PREFIX, restated: importing that module would load TensorFlow here
_KERAS = "keras_"


@dataclass(frozen=True)
class LineageStep:
    """One program on the winner's ancestor chain (the seed first, the winner last).

    Attributes:
        structural_hash: the program's structural hash.
        mutation: the mutation that produced it ("seed", "insert", ...).
        generation: mutations since the seed.
        fitness: its fitness (``-inf`` when rejected or diverged).
        program: its text.
        diff: unified-diff lines from its parent's text ("" for the first step).
    """

    structural_hash: str
    mutation: str
    generation: int
    fitness: float
    program: str
    diff: str


def display_name(key: str) -> str:
    """A reader's name for an optimizer key: ``adamw`` -> ``AdamW``, ``keras_lion`` ->
    ``Lion (Keras)``; any other name (``discovered``, ``#1 adam-like``) as it is."""
    bare = key.removeprefix(_KERAS)
    if bare != key and bare in _NAMES:
        return f"{_NAMES[bare]} (Keras)"
    return _NAMES.get(key, key)


def robust_limits(values: Sequence[float], whisker: float = 5.0) -> tuple[float, float]:
    """Axis limits around where most finite values are: from ``whisker`` robust standard
    deviations (1.4826 x the median absolute deviation) below the median, or the smallest
    value if that is higher, to the largest value, padded by 5%.

    A search's fitnesses have a long tail of catastrophic but finite scores (one candidate
    scored -3.7e35); limits from the minimum put every real candidate on one flat line. The
    median and its deviation ignore any tail under half the values, even among a lineage's
    few steps. The top is never cut: the best candidates are what a reader looks for. With
    no spread (half the values equal) the limits are the minimum and maximum.
    """
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if not v.size:
        return -1.0, 1.0
    median = float(np.median(v))
    spread = 1.4826 * float(np.median(np.abs(v - median)))
    lo, hi = float(v.min()), float(v.max())
    if spread > 0:
        lo = max(lo, median - whisker * spread)
    pad = 0.05 * ((hi - lo) or abs(hi) or 1.0)
    return lo - pad, hi + pad


def _best_so_far(values: Sequence[float]) -> list[float]:
    out, best = [], -math.inf
    for v in values:
        if math.isfinite(v) and v > best:
            best = v
        out.append(best if math.isfinite(best) else math.nan)
    return out


def _below_axis(ax, xs: Sequence[float], ys: Sequence[float], bottom: float) -> None:
    """Finite values under the axis' ``bottom`` as triangles on that edge, counted in the
    legend, so a clipped point is seen and never mistaken for a value at the edge."""
    below = [x for x, y in zip(xs, ys, strict=True) if math.isfinite(y) and y < bottom]
    if below:
        ax.scatter(below, [bottom] * len(below), s=14, marker="v", color="0.45", clip_on=False,
                   label=f"below the axis ({len(below)})")


def _worst_note(worst: Mapping[str, int], shown: int = 4) -> str:
    """The candidates with the worst fitness (not drawn: it is -inf), counted by reason, most
    frequent first ("" when there are none)."""
    counts = sorted(((n, k) for k, n in worst.items() if n), reverse=True)
    parts = [f"{k or 'no reason'} {n}" for n, k in counts[:shown]]
    if len(counts) > shown:
        parts.append(f"other {sum(n for n, _ in counts[shown:])}")
    return "worst fitness, not drawn: " + ", ".join(parts) if parts else ""


def fitness_over_candidates(
    fitness: Sequence[float],
    restarts: Sequence[tuple[int, str]] = (),
    worst: Mapping[str, int] | None = None,
    title: str = "fitness over candidates",
) -> Figure:
    """Each candidate's fitness (dots) on a robust axis, the best so far (line), restarts
    (dashed vertical lines).

    The y axis spans :func:`robust_limits`; finite fitnesses below it sit on its bottom edge
    as triangles and are counted. Candidates with the worst fitness (rejected, diverged,
    timed out) are not drawn but counted by reason in a note.

    Args:
        fitness: fitness per candidate, in candidate order.
        restarts: ``(candidate index, kind)`` per restart, e.g. ``(500, "from_seed")``.
        worst: the number of worst-fitness candidates per reason; by default the
            non-finite values of ``fitness``, counted under "worst".
        title: the axes title.
    """
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    bottom, top = robust_limits(fitness)
    xs = [i for i, f in enumerate(fitness) if math.isfinite(f) and f >= bottom]
    if xs:
        ax.scatter(xs, [fitness[i] for i in xs], s=4, alpha=0.35, label="candidate")
    _below_axis(ax, range(len(fitness)), fitness, bottom)
    ax.plot(range(len(fitness)), _best_so_far(fitness), color="C3", label="best so far")
    for k, (at, kind) in enumerate(restarts):
        ax.axvline(at, color="0.4", ls="--", lw=0.8, label="restart" if k == 0 else None)
        ax.annotate(kind, (at, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=7, color="0.3")
    if worst is None:
        worst = {"worst": sum(not math.isfinite(f) for f in fitness)}
    note = _worst_note(worst)
    ax.set_ylim(bottom, top)
    ax.set(xlabel="candidate", ylabel="fitness (higher is better)")
    ax.set_title(f"{title}\n{note}" if note else title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def funnel(
    rows: Sequence[Mapping[str, object]],
    titles: Mapping[str, str] | None = None,
    xlabel: str = "mean over seeds at its best lr\n(higher is better)",
) -> Figure:
    """One panel per funnel stage: each program's mean (dot) and seed spread (bar), the
    baseline's mean as a dashed line.

    Stages measure different things (a teacher loss near -0.01, an accuracy near 0.98), so
    each has its own x axis. A program keeps its row in every panel: empty where it was cut
    before that stage, "diverged" where its mean is not finite.

    Args:
        rows: the funnel table (``FunnelResult.table()``), each row with a ``label``; read:
            ``label``, ``stage``, ``mean``, ``std``, ``is_baseline``, ``beat_baseline``.
        titles: a panel title per stage name (default: the name).
        xlabel: each panel's x axis label.
    """
    stages = list(dict.fromkeys(str(r["stage"]) for r in rows)) or [""]
    ordered = sorted(rows, key=lambda r: not r["is_baseline"])  # stable: the baseline first
    labels = list(dict.fromkeys(str(r["label"]) for r in ordered))
    height = 1.9 + 0.35 * len(labels)
    fig = Figure(figsize=(4.5 * len(stages), height))
    axes = fig.subplots(1, len(stages), sharey=True, squeeze=False)[0]
    handles: dict[str, object] = {}
    for ax, stage in zip(axes, stages, strict=True):
        _funnel_panel(ax, [r for r in rows if r["stage"] == stage], labels, handles)
        ax.set(title=(titles or {}).get(stage, stage), xlabel=xlabel)
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].set_ylim(len(labels) - 0.5, -0.5)  # top down: the baseline, then proxy order
    if handles:  # below the panels, where it hides no row
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=3,
                   fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))
    return fig


def _funnel_panel(ax, rows: Sequence[Mapping[str, object]], labels: Sequence[str],
                  handles: dict[str, object]) -> None:
    """One stage: a dot and seed-spread bar per program; notes for the diverged and the cut.
    ``handles`` collects one legend handle per kind of point."""
    here = {str(r["label"]) for r in rows}
    for y, label in enumerate(labels):
        if label not in here:
            ax.annotate("cut before this stage", (0.02, y), xycoords=("axes fraction", "data"),
                        va="center", fontsize=7, color="0.5")
    for r in rows:
        y, mean = labels.index(str(r["label"])), float(r["mean"])
        if not math.isfinite(mean):
            ax.annotate("diverged", (0.02, y), xycoords=("axes fraction", "data"),
                        va="center", fontsize=7, color="C3")
            continue
        kind = ("baseline" if r["is_baseline"] else
                "beats the baseline" if r["beat_baseline"] else "does not beat it")
        color = {"baseline": "black", "beats the baseline": "C2"}.get(kind, "C0")
        handles.setdefault(kind, ax.errorbar(mean, y, xerr=float(r["std"]), fmt="o",
                                             color=color, capsize=3))
        if r["is_baseline"]:
            ax.axvline(mean, color="black", ls="--", lw=0.8)


def _moving_mean(ys: np.ndarray, window: int) -> np.ndarray:
    """The mean of each value and the ``window - 1`` before it (fewer at the start)."""
    sums = np.concatenate([[0.0], np.cumsum(ys)])
    n = np.arange(1, len(ys) + 1)
    start = np.maximum(n - window, 0)
    with np.errstate(invalid="ignore"):  # inf - inf after a divergence: nan, as it should be
        return (sums[n] - sums[start]) / (n - start)


def loss_curves(
    curves: Mapping[str, Mapping[str, Sequence[float]]], ylabel: str = "training loss"
) -> Figure:
    """Training-loss curves per benchmark task: ``{task: {optimizer: loss per step}}``.

    One panel per task, one line per optimizer (named by :func:`display_name`; "diverged"
    when its loss went non-finite). A minibatch loss is noisy, so each line is a moving mean
    over a fiftieth of the run; the y axis is logarithmic when every value is positive.
    """
    n = max(1, len(curves))
    fig = Figure(figsize=(5 * n, 4))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (task, per) in zip(axes, curves.items(), strict=False):
        window = 1
        for name, raw in per.items():
            ys = np.asarray(raw, dtype=float)
            window = max(1, len(ys) // 50)
            diverged = "" if np.all(np.isfinite(ys)) else " (diverged)"
            ax.plot(np.arange(1, len(ys) + 1), _moving_mean(ys, window),
                    label=display_name(name) + diverged)
        values = [y for ys in per.values() for y in ys if math.isfinite(y)]
        if values and min(values) > 0:
            ax.set_yscale("log")
        smoothed = f" (mean of {window} steps)" if window > 1 else ""
        ax.set(title=task, xlabel="training step", ylabel=ylabel + smoothed)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _lineage_text(steps: Sequence[LineageStep], max_diff_lines: int) -> str:
    blocks = []
    for k, s in enumerate(steps):
        head = f"[{k}] gen {s.generation}  {s.mutation}  fitness {s.fitness:.4g}"
        changed = [
            ln for ln in s.diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")
        ]
        if len(changed) > max_diff_lines:
            changed = changed[:max_diff_lines] + [f"... {len(changed) - max_diff_lines} more"]
        blocks.append("\n".join([head, *("    " + ln for ln in changed)]))
    return "\n".join(blocks) or "(no lineage)"


def _lineage_fitness(ax, steps: Sequence[LineageStep]) -> None:
    """Fitness at each step of the chain, the seed at 0 and the winner last."""
    fs = [s.fitness for s in steps]
    bottom, top = robust_limits(fs)
    shown = [(k, f) for k, f in enumerate(fs) if math.isfinite(f)]
    if shown:
        ax.plot(*zip(*shown, strict=True), marker="o", color="C0", label="fitness")
    _below_axis(ax, range(len(fs)), fs, bottom)
    if len(steps) <= 20:  # room for each mutation's name under its step
        ax.set_xticks(range(len(steps)), [s.mutation for s in steps], rotation=45,
                      ha="right", fontsize=7)
    ax.set_ylim(bottom, top)
    ax.legend(loc="lower right", fontsize=7)
    ax.set(xlabel="step from the seed (mutation)", ylabel="fitness",
           title=f"winner's lineage: the seed to the winner in {len(steps) - 1} mutations")


def lineage(steps: Sequence[LineageStep], max_diff_lines: int = 8) -> Figure:
    """The winner's ancestry from the seed: its fitness along the chain (top) and, per step,
    the mutation, fitness and the lines it changed (below)."""
    text = _lineage_text(steps, max_diff_lines)
    text_height = max(1.0, 0.16 * (text.count("\n") + 1))
    if not steps:
        fig = Figure(figsize=(9, 2.0))
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0, 1, text, va="top", ha="left", transform=ax.transAxes)
        return fig
    fig = Figure(figsize=(9, 3.0 + text_height))
    chart, listing = fig.subplots(2, 1, height_ratios=[3.0, text_height])
    _lineage_fitness(chart, steps)
    listing.axis("off")
    listing.text(0, 1, text, va="top", ha="left", family="monospace", fontsize=7,
                 transform=listing.transAxes)
    fig.tight_layout()
    return fig
