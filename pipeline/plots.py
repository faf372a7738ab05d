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

from matplotlib.figure import Figure

__all__ = ["LineageStep", "fitness_over_candidates", "funnel", "lineage", "loss_curves", "pivot"]


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


def _best_so_far(values: Sequence[float]) -> list[float]:
    out, best = [], -math.inf
    for v in values:
        if math.isfinite(v) and v > best:
            best = v
        out.append(best if math.isfinite(best) else math.nan)
    return out


def fitness_over_candidates(
    fitness: Sequence[float],
    restarts: Sequence[tuple[int, str]] = (),
    title: str = "fitness over candidates",
) -> Figure:
    """Each candidate's fitness (dots), the best so far (line), restarts (vertical lines).

    Args:
        fitness: fitness per candidate, in candidate order (non-finite ones are not drawn).
        restarts: ``(candidate index, kind)`` per restart, e.g. ``(500, "from_seed")``.
        title: the axes title.
    """
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    xs = [i for i, f in enumerate(fitness) if math.isfinite(f)]
    ax.scatter(xs, [fitness[i] for i in xs], s=4, alpha=0.35, label="candidate")
    ax.plot(range(len(fitness)), _best_so_far(fitness), color="C3", label="best so far")
    for k, (at, kind) in enumerate(restarts):
        ax.axvline(at, color="0.4", ls="--", lw=0.8, label="restart" if k == 0 else None)
        ax.annotate(kind, (at, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=7, color="0.3")
    ax.set(xlabel="candidate", ylabel="fitness (higher is better)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def pivot(
    rows: Sequence[Mapping[str, object]], row_key: str, col_key: str, value_key: str
) -> dict[str, dict[str, float]]:
    """Rows to ``{row[row_key]: {row[col_key]: row[value_key]}}``, e.g. for :func:`funnel`."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        value = r[value_key]
        out.setdefault(str(r[row_key]), {})[str(r[col_key])] = (
            math.nan if value is None else float(value)
        )
    return out


def funnel(
    scores: Mapping[str, Mapping[str, float]],
    stages: Sequence[str] | None = None,
    metric: str = "fitness",
) -> Figure:
    """One line per program across the funnel's stages.

    Args:
        scores: ``{program label: {stage: metric value}}``; a program missing a stage (it
            was cut) simply stops there.
        stages: stage order on the x axis; defaults to first-seen order.
        metric: the y axis label.
    """
    if stages is None:
        stages = list(dict.fromkeys(s for per in scores.values() for s in per))
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for label, per in scores.items():
        pts = [(i, per[s]) for i, s in enumerate(stages) if s in per and math.isfinite(per[s])]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=label)
    ax.set_xticks(range(len(stages)), list(stages))
    ax.set(xlabel="stage", ylabel=metric, title="funnel")
    if scores:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def loss_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], ylabel="loss") -> Figure:
    """Loss curves per benchmark task: ``{task: {optimizer: losses per step/epoch}}``.

    One panel per task, one line per optimizer; a log y axis when all values are positive.
    """
    n = max(1, len(curves))
    fig = Figure(figsize=(5 * n, 4))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (task, per) in zip(axes, curves.items(), strict=False):
        for name, ys in per.items():
            ax.plot(range(1, len(ys) + 1), ys, label=name)
        values = [y for ys in per.values() for y in ys if math.isfinite(y)]
        if values and min(values) > 0:
            ax.set_yscale("log")
        ax.set(title=task, xlabel="epoch", ylabel=ylabel)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def lineage(steps: Sequence[LineageStep], max_diff_lines: int = 8) -> Figure:
    """The winner's ancestry as text: per step, the mutation, fitness and what changed."""
    blocks = []
    for k, s in enumerate(steps):
        head = f"[{k}] gen {s.generation}  {s.mutation}  fitness {s.fitness:.4g}"
        changed = [
            ln for ln in s.diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")
        ]
        if len(changed) > max_diff_lines:
            changed = changed[:max_diff_lines] + [f"... {len(changed) - max_diff_lines} more"]
        blocks.append("\n".join([head, *("    " + ln for ln in changed)]))
    text = "\n".join(blocks) or "(no lineage)"
    lines = text.count("\n") + 1
    fig = Figure(figsize=(9, max(2.0, 0.18 * lines + 0.6)))
    ax = fig.subplots()
    ax.axis("off")
    ax.set_title("winner's lineage (seed first)", loc="left")
    ax.text(0, 1, text, va="top", ha="left", family="monospace", fontsize=7, transform=ax.transAxes)
    return fig
