"""The figures a person reads, checked on the real matplotlib objects: axis limits and scales,
panels, labels and counts, not pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline import plots
from pipeline.plots import LineageStep


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def _collection(ax, label_start: str):
    return next(c for c in ax.collections if c.get_label().startswith(label_start))


def test_the_fitness_axis_shows_the_real_candidates_not_the_one_catastrophe():
    rng = np.random.default_rng(0)
    real = list(-0.02 + 0.01 * rng.random(300))  # a teacher loss near -0.01
    fitness = [*real[:150], -1e3, *[-5e2] * 29, -3.7e35, *real[150:], -math.inf, -math.inf]
    fig = plots.fitness_over_candidates(fitness, [(100, "from_seed"), (200, "from_best")],
                                        {"diverged": 3, "undefined_read": 2})
    ax = fig.axes[0]
    bottom, top = ax.get_ylim()
    assert -0.05 < bottom < min(real) and top >= max(real)  # not down to -3.7e35
    assert len(_collection(ax, "candidate").get_offsets()) == 300
    below = _collection(ax, "below the axis")
    assert below.get_label() == "below the axis (31)"
    assert set(below.get_offsets()[:, 1]) == {bottom}  # on the edge, not at their values
    vertical = [ln for ln in ax.lines if len(set(ln.get_xdata())) == 1]
    assert sorted(ln.get_xdata()[0] for ln in vertical) == [100, 200]
    assert ax.get_title().endswith("worst fitness, not drawn: diverged 3, undefined_read 2")
    best = next(ln for ln in ax.lines if ln.get_label() == "best so far")
    assert best.get_ydata()[-1] == max(real)


def test_without_reasons_the_fitness_plot_counts_the_worst_and_keeps_the_best_so_far():
    fig = plots.fitness_over_candidates([0.1, -math.inf, 0.3, 0.2])
    ax = fig.axes[0]
    assert len(_collection(ax, "candidate").get_offsets()) == 3
    assert ax.get_title().endswith("not drawn: worst 1")
    best = next(ln for ln in ax.lines if ln.get_label() == "best so far")
    assert list(best.get_ydata()) == [0.1, 0.1, 0.3, 0.3]


@pytest.mark.parametrize("values", [[2.0] * 5, [0.0], [], [-math.inf, math.nan]])
def test_robust_limits_never_collapse_to_a_point(values):
    bottom, top = plots.robust_limits(values)
    assert bottom < top
    assert all(bottom < v < top for v in values if math.isfinite(v))


def _funnel_rows() -> list[dict]:
    def row(label, stage, mean, std=0.001, baseline=False, beat=False):
        return {"label": label, "stage": stage, "mean": mean, "std": std,
                "is_baseline": baseline, "beat_baseline": beat}

    return [
        row("AdamW (baseline)", "B", -0.010, baseline=True),
        row("#1 sign-momentum (winner)", "B", -0.009, beat=True),
        row("#2 adam-like", "B", -0.012),
        row("#3 other", "B", -math.inf, std=0.0),
        row("AdamW (baseline)", "C", 0.975, std=0.003, baseline=True),
        row("#1 sign-momentum (winner)", "C", 0.981, std=0.002, beat=True),
    ]


def test_the_funnel_has_a_panel_per_stage_on_its_own_scale_with_the_baseline_named():
    fig = plots.funnel(_funnel_rows(), {"B": "stage B: teacher x10", "C": "stage C: digits x10"})
    b, c = fig.axes
    assert [b.get_title(), c.get_title()] == ["stage B: teacher x10", "stage C: digits x10"]
    assert [t.get_text() for t in b.get_yticklabels()] == [
        "AdamW (baseline)", "#1 sign-momentum (winner)", "#2 adam-like", "#3 other"]
    assert -0.02 < b.get_xlim()[0] and b.get_xlim()[1] < 0  # a loss near -0.01 ...
    assert 0.9 < c.get_xlim()[0] and c.get_xlim()[1] < 1  # ... and an accuracy near 0.98
    assert len(b.containers) == 3 and len(c.containers) == 2  # cut before C: no point there
    winner_in_c = c.containers[1].lines[0]
    assert list(winner_in_c.get_ydata()) == [1]  # the same row as in B
    dashed = [ln.get_xdata()[0] for ln in c.lines if ln.get_linestyle() == "--"]
    assert dashed == [0.975]  # the baseline's mean
    assert "diverged" in _texts(b)
    assert _texts(c) == ["cut before this stage"] * 2
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "baseline", "beats the baseline", "does not beat it"]


def test_loss_curves_name_the_optimizers_and_smooth_the_minibatch_noise():
    steps = np.arange(1, 201, dtype=float)
    lion = 1.0 / steps
    lion[150:] = np.inf
    fig = plots.loss_curves({"teacher": {"discovered": 1.0 / steps, "keras_adamw": 2.0 / steps,
                                         "keras_lion": lion},
                             "char_lm": {"keras_adamw": 3.0 / steps}})
    teacher, char_lm = fig.axes
    assert [t.get_text() for t in teacher.get_legend().get_texts()] == [
        "discovered", "AdamW (Keras)", "Lion (Keras) (diverged)"]
    assert teacher.get_xlabel() == "training step"
    assert teacher.get_ylabel() == "training loss (mean of 4 steps)"
    assert teacher.lines[0].get_ydata()[-1] == pytest.approx(np.mean(1.0 / steps[-4:]))
    assert char_lm.get_yscale() == "log" and len(char_lm.lines) == 1


def test_the_lineage_plot_runs_from_the_seed_to_the_winner():
    steps = [
        LineageStep("h0", "seed", 0, 0.50, "u = sign(g)\n", ""),
        LineageStep("h1", "insert", 1, 0.60, "c = g\nu = sign(c)\n", "+c = g\n"),
        LineageStep("h2", "change_arg", 2, 0.75, "c = g\nu = tanh(c)\n",
                    "-u = sign(c)\n+u = tanh(c)\n"),
    ]
    fig = plots.lineage(steps)
    chart, listing = fig.axes
    assert list(chart.lines[0].get_ydata()) == [0.50, 0.60, 0.75]
    assert [t.get_text() for t in chart.get_xticklabels()] == ["seed", "insert", "change_arg"]
    assert "the seed to the winner in 2 mutations" in chart.get_title()
    assert "+u = tanh(c)" in listing.texts[0].get_text()
    assert _texts(plots.lineage([]).axes[0]) == ["(no lineage)"]


def test_display_names_for_the_optimizers_the_pipeline_knows():
    assert plots.display_name("adamw") == "AdamW"
    assert plots.display_name("keras_lion") == "Lion (Keras)"
    assert plots.display_name("discovered") == "discovered"
