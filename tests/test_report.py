"""What a discover run reports: headline metrics, its description, the model card."""

from __future__ import annotations

import math

import pytest

from pipeline import seeds
from pipeline.benchmark import BenchmarkResult, BenchmarkRow
from pipeline.funnel import FunnelResult, FunnelRow
from pipeline.program import Program
from pipeline.report import (
    benchmark_markdown,
    headline_metrics,
    run_description,
    version_description,
    version_tags,
)

WINNER = seeds.lion()
FIXED = Program.parse("m = interp(g, m, 0.9)\nu = sign(m)\nupdate = u * 0.001\n")
URI = "models:/lionforge-discovered@champion"


def _frow(program: Program, stage: str, mean: float, baseline: bool, beat: bool) -> FunnelRow:
    return FunnelRow(program.to_text(), program.structural_hash(), stage, baseline, 1.0,
                     (mean,), mean, 0.01, beat)


def _funnel(winner_c: float, winner: Program | None = WINNER) -> FunnelResult:
    adamw = seeds.adamw()
    rows = [_frow(adamw, "B", -0.5, True, False), _frow(adamw, "C", 0.90, True, False)]
    if winner is not None:
        rows[1:1] = [_frow(winner, "B", -0.4, False, True)]
        rows.append(_frow(winner, "C", winner_c, False, winner_c > 0.90))
    return FunnelResult(tuple(rows), winner, 1.0, winner)


def _brow(opt: str, task: str, mean: float, best_lr: float = 1e-3) -> BenchmarkRow:
    return BenchmarkRow(opt, task, "neg_val_loss", best_lr, mean, 0.02, (mean,),
                        ((1e-4, mean - 1), (best_lr, mean), (1e-2, mean - 1)))


BENCH = BenchmarkResult((
    _brow("discovered", "digits_mlp", -0.05), _brow("keras_adamw", "digits_mlp", -0.07),
    _brow("keras_lion", "digits_mlp", -0.12),
    _brow("discovered", "char_lm", -2.30), _brow("keras_adamw", "char_lm", -2.22),
    _brow("keras_lion", "char_lm", -math.inf),  # diverged everywhere
), {})


def test_headline_metrics_hold_every_contender_and_the_delta_to_adamw():
    m = headline_metrics(-0.03, _funnel(0.95), BENCH)
    assert m["best_proxy_fitness"] == -0.03
    assert m["funnel_C_winner"] == 0.95 and m["funnel_C_adamw"] == 0.90
    assert m["bench_digits_mlp_discovered"] == -0.05
    assert m["bench_digits_mlp_keras_lion"] == -0.12
    assert m["bench_digits_mlp_delta_vs_adamw"] == pytest.approx(0.02)
    assert m["bench_char_lm_delta_vs_adamw"] == pytest.approx(-0.08)
    assert "bench_char_lm_keras_lion" not in m  # -inf charts as nothing: left out
    assert all(math.isfinite(v) for v in m.values())


def test_without_a_winner_there_is_no_winner_metric_but_the_baseline_is_there():
    m = headline_metrics(None, _funnel(0.0, winner=None), BENCH)
    assert "funnel_C_winner" not in m and m["funnel_C_adamw"] == 0.90
    assert "best_proxy_fitness" not in m


def test_the_benchmark_table_is_markdown_with_one_row_per_task_and_edges_marked():
    edge = BenchmarkResult((_brow("discovered", "teacher", -0.1, best_lr=1e-2),
                            _brow("keras_adamw", "teacher", -0.2)), {})
    lines = benchmark_markdown(edge).splitlines()
    assert lines[0] == "| task | discovered | keras_adamw |"
    assert lines[2].startswith("| teacher | -0.1000 ± 0.0200 (lr 0.01*) |")
    assert len(benchmark_markdown(BENCH).splitlines()) == 2 + 2


def test_the_run_description_says_why_the_champion_is_what_it_is():
    won = run_description(WINNER, WINNER, True, _funnel(0.95), BENCH, URI)
    assert WINNER.to_text().rstrip() in won and "is the champion" in won
    assert f'load_optimizer("{URI}"' in won and "reads `lr`" in won
    lost = run_description(seeds.adamw(), WINNER, False, _funnel(0.85), BENCH, URI)
    assert "did not beat AdamW on the last stage" in lost
    assert WINNER.to_text().rstrip() in lost  # the benchmarked winner is shown too
    fixed = run_description(FIXED, FIXED, True, _funnel(0.95, FIXED), BENCH, URI)
    assert "**Warning:** this rule never reads lr" in fixed


def test_the_model_card_tags_describe_the_registered_program_only():
    tags = version_tags(WINNER, True, _funnel(0.95), BENCH, -0.03, "quickstart.gin", "abc123")
    assert tags == {
        "champion": "discovered", "reads_lr": "True", "config": "quickstart.gin",
        "git_commit": "abc123", "proxy_fitness": "-0.03", "funnel_C": "0.95 ± 0.01",
        "bench_delta_vs_adamw.digits_mlp": "+0.02", "bench_delta_vs_adamw.char_lm": "-0.08",
    }
    # AdamW registered: the benchmark measured the winner, not it, so no deltas on its card
    base = version_tags(seeds.adamw(), False, _funnel(0.85), BENCH, -0.03, "q.gin", "")
    assert base == {"champion": "baseline", "reads_lr": "True", "config": "q.gin",
                    "funnel_C": "0.9 ± 0.01"}
    card = version_description(seeds.adamw(), False, BENCH, URI)
    assert "AdamW registered as the champion" in card and "| digits_mlp |" not in card
    assert "| digits_mlp |" in version_description(WINNER, True, BENCH, URI)
