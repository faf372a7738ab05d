"""The benchmark: fair, best-of-grid comparisons of programs and Keras optimizers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from pipeline import Program, benchmark, seeds
from pipeline.benchmark import (
    Contender,
    keras_contender,
    program_contender,
    run_benchmark,
    train_with_optimizer,
)
from pipeline.evaluator import NO_HURDLES, evaluate
from pipeline.keras_optimizer import ProgramOptimizer
from pipeline.tasks import make_task


@pytest.fixture(scope="module")
def result():
    contenders = [
        program_contender("adamw_program", seeds.adamw(), 1e-2),
        keras_contender("adamw", 1e-2),
        keras_contender("lion", 1e-3),
        program_contender("diverges", Program.parse("u = g * 1000000.0\nupdate = u * lr"), 1.0),
    ]
    tasks = [make_task("teacher", base_steps=40)]
    # max_extend=0: these tests pin the initial grid (its growth is tested below).
    return run_benchmark(contenders, tasks, lr_multipliers=(0.5, 2.0), seeds=(0, 1),
                         max_extend=0)


def test_every_contender_gets_the_same_grid_size_and_seeds(result):
    assert [r.optimizer for r in result.rows] == [
        "adamw_program", "keras_adamw", "keras_lion", "diverges"
    ]
    for row in result.rows:
        assert len(row.grid) == 2 and len(row.per_seed) == 2
        assert row.best_lr in {lr for lr, _ in row.grid}
        assert row.mean == max(score for _, score in row.grid)


def test_a_program_scores_exactly_like_the_keras_optimizer_it_reproduces(result):
    ours, theirs = result.rows[0], result.rows[1]
    assert ours.best_lr == theirs.best_lr
    np.testing.assert_allclose(ours.per_seed, theirs.per_seed, rtol=1e-4)


def test_a_diverging_contender_scores_worst_and_the_rest_go_on(result):
    diverged = result.rows[3]
    assert diverged.mean == -math.inf
    assert all(math.isfinite(r.mean) for r in result.rows[:3])


def test_curves_are_the_mean_training_loss_at_the_best_lr(result):
    curve = result.curves["keras_lion", "teacher"]
    assert curve.shape == (40,)
    assert curve[-5:].mean() < curve[:5].mean()  # it trained


def test_table_and_text_format(result):
    table = result.table()
    assert {"optimizer", "task", "best_lr", "mean", "std", "per_seed", "at_grid_edge"} <= set(
        table[0]
    )
    text = result.format()
    assert text.splitlines()[1].split()[1] in {"adamw_program", "keras_adamw"}  # best first


def test_a_best_lr_at_the_grid_edge_is_flagged(result):
    # A two-point grid: every best lr is an edge; the table says so.
    assert all(r.at_grid_edge for r in result.rows)
    assert result.format().splitlines()[-1].startswith("* best learning rate at the edge")
    lion = next(r for r in result.rows if r.optimizer == "keras_lion")
    three = type(lion)(**{**lion.__dict__, "grid": ((1e-4, -1.0), (lion.best_lr, -0.5),
                                                     (1.0, -2.0))})
    assert not three.at_grid_edge


def test_seed_changes_initialization_and_data_order_but_is_reproducible():
    task = make_task("teacher", base_steps=20)
    a = train_with_optimizer(task, ProgramOptimizer(seeds.lion(), learning_rate=1e-3))
    b = train_with_optimizer(task, ProgramOptimizer(seeds.lion(), learning_rate=1e-3))
    c = train_with_optimizer(
        make_task("teacher", base_steps=20, seed=1),
        ProgramOptimizer(seeds.lion(), learning_rate=1e-3),
    )
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    assert not np.allclose(a[0], c[0])


def test_a_program_that_never_reads_lr_runs_once_and_says_so():
    fixed = program_contender("fixed", Program.parse("update = g * 0.01"), 1e-2)
    rewritten = program_contender(  # lr overwritten by a function of t: ignored too
        "rewritten", Program.parse("lr = arctanh(t)\nu = g * lr\nupdate = u * 0.001"), 1e-2)
    adamw = program_contender("adamw_program", seeds.adamw(), 1e-2)
    out = run_benchmark([fixed, rewritten, adamw], [make_task("teacher", base_steps=10)],
                        lr_multipliers=(0.5, 2.0), seeds=(0,))
    by_name = {r.optimizer: r for r in out.rows}
    for name in ("fixed", "rewritten"):
        row = by_name[name]
        assert not row.uses_lr and not row.at_grid_edge and row.extended == (0, 0)
        assert row.grid == ((1e-2, row.mean),) and row.best_lr == 1e-2
    adamw = by_name["adamw_program"]
    assert adamw.uses_lr and len(adamw.grid) == 2 + sum(adamw.extended)
    text = out.format()
    assert sum("ignored" in line.split() for line in text.splitlines()) == 2
    assert text.splitlines()[-1].startswith("ignored: the program never reads lr")


@pytest.mark.parametrize("name", ["teacher", "digits_mlp"])  # a regression, a classification
def test_the_funnel_and_the_benchmark_give_a_program_the_same_score(name):
    # The funnel's batched evaluator and the benchmark's Keras loop judge the same program on
    # the same task, seed and learning rate: whatever ``task.metric`` is, they must agree.
    programs = [seeds.adamw(), seeds.lion()]
    for seed in (0, 1):
        task = dataclasses.replace(make_task(name, scale=1.0), seed=seed)
        funnel = [r.fitness for r in evaluate(programs, task, hurdles=NO_HURDLES)]
        lr = task.learning_rate  # the evaluator's ``lr``
        bench = [train_with_optimizer(task, ProgramOptimizer(p, learning_rate=lr))[1]
                 for p in programs]
        assert all(map(math.isfinite, funnel)), (task.metric, funnel)
        np.testing.assert_allclose(funnel, bench, rtol=0, atol=1e-3, err_msg=f"{task.metric}")


def _peaked_at(best_lr: float):
    """A stand-in for training whose metric peaks at ``best_lr`` (on a log scale): with
    ``Contender(make=lambda lr: lr)`` the "optimizer" it gets is the learning rate."""
    def train(task, lr):
        return np.zeros(task.steps, np.float32), -abs(math.log(lr / best_lr))
    return train


def _grid_for(monkeypatch, best_lr: float, uses_lr: bool = True, **kwargs):
    monkeypatch.setattr(benchmark, "train_with_optimizer", _peaked_at(best_lr))
    c = Contender("peaked", lambda lr: lr, base_lr=1e-2, uses_lr=uses_lr)
    out = run_benchmark([c], [make_task("teacher", base_steps=2)], seeds=(0,), **kwargs)
    return out.rows[0], out


@pytest.mark.parametrize("best_lr, extended", [(4.5e-2, (0, 1)), (2e-3, (1, 0))])
def test_a_grid_grows_past_an_edge_until_the_best_rate_is_inside(monkeypatch, best_lr, extended):
    row, out = _grid_for(monkeypatch, best_lr, lr_multipliers=(1 / 3, 1.0, 3.0))
    assert row.extended == extended and len(row.grid) == 3 + 1
    assert not row.at_grid_edge
    lrs = [lr for lr, _ in row.grid]
    assert lrs == sorted(lrs) and min(lrs) < best_lr < max(lrs)
    assert row.to_dict()["grid"] == [list(p) for p in row.grid]
    assert "(4+)" in out.format() and "*" not in out.format()


def test_a_grid_grows_by_the_step_at_its_edge_and_at_most_max_extend_steps(monkeypatch):
    up, out = _grid_for(monkeypatch, 100.0, lr_multipliers=(0.1, 1.0, 2.0))
    np.testing.assert_allclose([lr for lr, _ in up.grid], [1e-3, 1e-2, 2e-2, 4e-2, 8e-2])
    assert up.extended == (0, 2) and up.best_lr == up.grid[-1][0]
    assert up.at_grid_edge  # still at the edge after the bound: the mark stays
    assert out.format().splitlines()[-1].startswith("* best learning rate at the edge")
    down, _ = _grid_for(monkeypatch, 1e-9, lr_multipliers=(0.1, 1.0, 2.0), max_extend=1)
    np.testing.assert_allclose([lr for lr, _ in down.grid], [1e-4, 1e-3, 1e-2, 2e-2])
    assert down.extended == (1, 0) and down.at_grid_edge
    fixed, _ = _grid_for(monkeypatch, 100.0, lr_multipliers=(0.1, 1.0, 2.0), max_extend=0)
    assert len(fixed.grid) == 3 and fixed.extended == (0, 0) and fixed.at_grid_edge


def test_a_program_that_never_reads_lr_is_never_extended(monkeypatch):
    row, _ = _grid_for(monkeypatch, 100.0, uses_lr=False, lr_multipliers=(1 / 3, 1.0, 3.0))
    assert row.grid == ((1e-2, row.mean),) and row.extended == (0, 0)
    assert not row.at_grid_edge


def test_a_grid_needs_positive_multipliers_and_a_non_negative_bound():
    c = keras_contender("adamw", 1e-3)
    task = make_task("teacher", base_steps=2)
    with pytest.raises(ValueError, match="lr_multipliers"):
        run_benchmark([c], [task], lr_multipliers=(0.0, 1.0))
    with pytest.raises(ValueError, match="max_extend"):
        run_benchmark([c], [task], max_extend=-1)
