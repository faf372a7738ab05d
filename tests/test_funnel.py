"""The funnel: gates against the baseline, the same learning-rate treatment for everyone."""

from __future__ import annotations

import math

import pytest

from pipeline import Program, seeds
from pipeline.funnel import (
    FunnelResult,
    FunnelRow,
    Stage,
    run_funnel,
    top_k_distinct,
    top_k_of_records,
)
from pipeline.numpy_tasks import Quadratic

STAGES = (Stage("B", "quadratic", 8), Stage("C", "quadratic", 32))
WINNER = seeds.adamw(beta_1=0.7)  # beats AdamW on both stages
LATE_BLOOMER = seeds.adamw(beta_2=0.99)  # loses on B, would beat AdamW on C
LOSER = seeds.lion()  # loses on B


class CountingEvaluate:
    """A NumPy stand-in for the batched evaluator: stage.scale is the quadratic's size."""

    def __init__(self):
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, programs, stage, seed):
        self.calls.append((stage.name, seed, len(programs)))
        task = Quadratic(dim=int(stage.scale), steps=60, lr=0.3, seed=seed)
        return [task(p) for p in programs]


@pytest.fixture(scope="module")
def funnel():
    evaluate = CountingEvaluate()
    result = run_funnel(
        [LOSER, LATE_BLOOMER, WINNER], STAGES, evaluate, seeds=(0, 1), lr_multipliers=(1 / 3, 1, 3)
    )
    return result, evaluate


def _rows(result, stage):
    rows = [r for r in result.rows if r.stage == stage]
    return {("baseline" if r.is_baseline else r.program): r for r in rows}


def test_only_programs_that_beat_the_baseline_reach_the_next_stage(funnel):
    result, _ = funnel
    b, c = _rows(result, "B"), _rows(result, "C")
    assert b[WINNER.to_text()].beat_baseline and not b[LOSER.to_text()].beat_baseline
    assert not b[LATE_BLOOMER.to_text()].beat_baseline
    assert set(c) == {"baseline", WINNER.to_text()}  # the late bloomer never gets to C


def test_the_winner_is_the_best_on_the_last_stage(funnel):
    result, _ = funnel
    assert result.winner == WINNER
    c = _rows(result, "C")
    assert c[WINNER.to_text()].mean > c["baseline"].mean
    assert result.winner_lr_multiplier == c[WINNER.to_text()].lr_multiplier


def test_each_stage_scores_everyone_in_one_batch_per_seed(funnel):
    _, evaluate = funnel
    # B: baseline + 3 candidates, x3 multipliers; C: baseline + 1 survivor, x3.
    assert evaluate.calls == [("B", 0, 12), ("B", 1, 12), ("C", 0, 6), ("C", 1, 6)]


def test_rows_carry_per_seed_scores_mean_and_spread(funnel):
    result, _ = funnel
    for row in result.rows:
        assert len(row.per_seed) == 2
        assert row.mean == pytest.approx(sum(row.per_seed) / 2)
        assert row.lr_multiplier in (1 / 3, 1, 3)
    assert {"program", "stage", "per_seed", "mean", "std", "beat_baseline", "lr_multiplier"} <= set(
        result.table()[0]
    )


def test_a_badly_scaled_copy_of_the_baseline_is_rescued_by_the_lr_treatment():
    scaled = seeds.adamw().with_lr_scale(1 / 3)
    result = run_funnel([scaled], STAGES[:1], CountingEvaluate(), seeds=(0, 1))
    base, cand = result.rows
    assert cand.lr_multiplier == 3 and base.lr_multiplier == 1
    assert cand.mean == pytest.approx(base.mean)


def test_when_nobody_beats_the_baseline_there_is_no_winner_but_a_best_effort():
    result = run_funnel([LOSER, LATE_BLOOMER], STAGES, CountingEvaluate(), seeds=(0,))
    assert result.winner is None
    assert result.best_effort == LATE_BLOOMER  # the better of the two on stage B
    assert {r.stage for r in result.rows} == {"B"}


def test_a_diverging_program_scores_worst_and_the_funnel_goes_on():
    boom = Program.parse("update = g * 1e30")
    result = run_funnel([boom, WINNER], STAGES, CountingEvaluate(), seeds=(0,))
    rows = _rows(result, "B")
    assert rows[boom.to_text()].mean == -math.inf
    assert result.winner == WINNER


def test_top_k_distinct_keeps_one_program_per_dataflow():
    a = seeds.lion()
    renamed = Program.parse(a.to_text().replace("c", "q"))
    scored = [(a, 1.0), (renamed, 2.0), (seeds.adamw(), 0.5), (seeds.signsgd(), -math.inf)]
    top = top_k_distinct(scored, 5)
    assert top == [renamed, seeds.adamw()]
    assert top_k_distinct(scored, 1) == [renamed]


def test_lr_scale_is_a_program_transform():
    p = seeds.lion().with_lr_scale(0.5)
    assert p.statements[0].to_text() == "lr = lr * 0.5"
    assert seeds.lion().with_lr_scale(1.0) == seeds.lion()


def test_table_shows_no_multiplier_for_a_program_that_never_reads_lr():
    def row(text: str, mult: float) -> FunnelRow:
        p = Program.parse(text)
        return FunnelRow(p.to_text(), p.structural_hash(), "B", False, mult, (0.5,), 0.5, 0.0,
                         True)

    table = FunnelResult((row("update = g * lr", 3.0), row("update = g * 0.01", 3.0)),
                         None, 1.0, None).format().splitlines()
    assert table[1].split()[2] == "3" and table[2].split()[2] == "-"


def test_the_table_names_programs_by_their_labels_in_an_aligned_column():
    p, q = Program.parse("update = g * lr"), seeds.lion()
    rows = tuple(FunnelRow(x.to_text(), x.structural_hash(), "B", x == q, 1.0, (0.5,), 0.5,
                           0.0, x != q) for x in (p, q))
    labels = {p.to_text(): "#1 sgd (winner)", q.to_text(): "Lion (baseline)"}
    table = FunnelResult(rows, p, 1.0, p).format(labels).splitlines()
    assert table[1].startswith("B      #1 sgd (winner)  ") and "Lion (baseline)" in table[2]
    assert len({len(line) for line in table[1:]}) == 1  # the label column is as wide as needed
    plain = FunnelResult(rows, p, 1.0, p).format().splitlines()
    assert plain[1].split()[1] == p.structural_hash()[:8] and plain[2].split()[1] == "baseline"


def test_a_winner_beats_the_baseline_only_if_it_also_beat_it_on_the_last_stage(funnel):
    result, evaluate = funnel
    assert result.beat_baseline  # WINNER beats AdamW on B and on C
    # The late bloomer's mirror: beats AdamW on the first stage, loses on the last.
    early = (Stage("C", "quadratic", 32), Stage("B", "quadratic", 8))
    swapped = run_funnel([LATE_BLOOMER], early, evaluate, seeds=(0, 1),
                         lr_multipliers=(1 / 3, 1, 3))
    first, last = _rows(swapped, "C"), _rows(swapped, "B")
    assert first[LATE_BLOOMER.to_text()].beat_baseline
    assert not last[LATE_BLOOMER.to_text()].beat_baseline
    assert swapped.winner == LATE_BLOOMER and not swapped.beat_baseline


def test_the_funnel_takes_the_best_distinct_programs_a_search_scored():
    from types import SimpleNamespace as Rec

    lion, adam = seeds.lion().to_text(), seeds.adamw().to_text()
    sgd = "update = g * lr\n"
    records = [Rec(program=sgd, fitness=-1.0, rejection=""),
               Rec(program=lion, fitness=float("nan"), rejection=""),   # diverged
               Rec(program=adam, fitness=5.0, rejection="ignores_lr"),  # rejected
               Rec(program=lion, fitness=-0.5, rejection=""),
               Rec(program=adam, fitness=-2.0, rejection="")]
    # Lion's diverged try is skipped, its finite one counts; AdamW's rejection scored 5.0
    # but was rejected, so only its -2.0 counts.
    assert top_k_of_records(records, 2) == [Program.parse(lion), Program.parse(sgd)]
    assert top_k_of_records(records, 5) == [Program.parse(t) for t in (lion, sgd, adam)]
