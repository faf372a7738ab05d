"""The tracker against a real MLflow sqlite store in tmp_path, read back through MlflowClient."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline import plots, seeds
from pipeline.program import Program
from pipeline.records import CandidateRecord
from pipeline.tracking import (
    CANDIDATES_TABLE,
    EXPERIMENT_KIND,
    Tracker,
    default_tracking_uri,
    lineage,
)


def _records(n: int, start: int = 0) -> list[CandidateRecord]:
    """n synthetic candidates: every 3rd rejected, every 5th an FEC hit, every 7th structural."""
    text = seeds.adamw().to_text()
    out = []
    for i in range(start, start + n):
        rejected = i % 3 == 0
        hit = "fec" if i % 5 == 0 else "structural" if i % 7 == 0 else ""
        out.append(
            CandidateRecord(
                index=i,
                program=text,
                structural_hash=f"h{i}",
                fingerprint="" if rejected else f"f{i}",
                parent_hash=f"h{i - 1}" if i else "",
                mutation="insert" if i else "seed",
                generation=i,
                stage="proxy",
                fitness=-math.inf if rejected else math.sin(i) + i / 100,
                cache_hit=hit,
                rejection="invalid shape" if rejected else "",
            )
        )
    return out


def _table(client: MlflowClient, run_id: str, path: str, tmp_path: Path) -> dict:
    local = client.download_artifacts(run_id, path, str(tmp_path))
    return json.loads(Path(local).read_text())


def _child_runs(client: MlflowClient, parent_id: str) -> dict:
    runs = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
    )
    return {r.info.run_name: r for r in runs}


def test_default_tracking_uri_is_absolute_sqlite_in_cwd_and_env_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri() == "sqlite:///" + (tmp_path / "mlflow.db").resolve().as_posix()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/x.db")
    assert default_tracking_uri() == "sqlite:////elsewhere/x.db"


def test_candidates_table_has_one_row_per_candidate_across_batched_appends(store, tmp_path):
    tracker = Tracker("cfg", flush_rows=40, metrics_every=50)
    assert tracker.tracking_uri == store
    records = _records(250)
    with tracker.run("discover", seed=0):
        with tracker.stage("evolve") as run_id:
            for i in range(0, 250, 30):  # batches that do not line up with flush_rows
                tracker.log_candidates(records[i : i + 30])
    client = MlflowClient(store)
    table = _table(client, run_id, CANDIDATES_TABLE, tmp_path)
    assert table["columns"] == [f.name for f in fields(CandidateRecord)]
    rows = [dict(zip(table["columns"], r, strict=True)) for r in table["data"]]
    assert [r["index"] for r in rows] == list(range(250))
    assert [r["structural_hash"] for r in rows] == [r.structural_hash for r in records]
    assert rows[3]["fitness"] is None and rows[3]["rejection"] == "invalid shape"
    assert rows[4]["fitness"] == pytest.approx(records[4].fitness)
    assert rows[5]["cache_hit"] == "fec" and rows[7]["cache_hit"] == "structural"
    # The artifacts live inside tmp_path (next to the sqlite file), not in the repository.
    assert client.get_run(run_id).info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())


def test_metrics_are_logged_per_step_with_best_so_far_and_hit_rates(store):
    tracker = Tracker("cfg", flush_rows=1000, metrics_every=50)
    records = _records(230)
    with tracker.stage("evolve") as run_id:
        tracker.log_candidates(records[:120])
        tracker.log_candidates(records[120:])
    client = MlflowClient(store)
    best = client.get_metric_history(run_id, "best_fitness")
    assert [m.step for m in best] == [50, 100, 150, 200, 230]  # the last step on close
    for m in best:
        expected = max(r.fitness for r in records[: m.step] if math.isfinite(r.fitness))
        assert m.value == pytest.approx(expected)
    hits = {m.step: m.value for m in client.get_metric_history(run_id, "cache_hit_rate")}
    assert hits[230] == pytest.approx(sum(1 for r in records if r.cache_hit) / 230)
    evaluated = client.get_metric_history(run_id, "evaluated")[-1].value
    assert evaluated == sum(r.evaluated for r in records)
    speed = client.get_metric_history(run_id, "candidates_per_s")
    assert len(speed) == 5 and all(m.value > 0 for m in speed)


def test_experiments_are_marked_as_model_development_so_the_ui_opens_on_runs(store):
    client = MlflowClient(store)
    Tracker("fresh")
    kind = client.get_experiment_by_name("fresh").tags[EXPERIMENT_KIND]
    assert kind == "custom_model_development"
    old = client.create_experiment("made_by_an_older_lionforge")
    Tracker("made_by_an_older_lionforge")
    assert client.get_experiment(old).tags[EXPERIMENT_KIND] == "custom_model_development"


def test_parent_run_has_config_params_seed_and_child_stage_runs(store, tmp_path):
    tracker = Tracker("quickstart")
    with tracker.run("discover", config_text="evolve.budget = 10\n", params={"budget": 10},
                     seed=7, tags={"kind": "test"}) as parent:
        with tracker.stage("evolve", params={"population": 8}) as evolve_id:
            tracker.log_candidates(_records(5))
        with tracker.stage("funnel"):
            tracker.log_table([{"program": "a", "stage": "B", "fitness": 1.5}], "funnel")
    client = MlflowClient(store)
    run = client.get_run(parent)
    assert client.get_experiment(run.info.experiment_id).name == "quickstart"
    assert run.data.params == {"budget": "10"}
    assert run.data.tags["seed"] == "7" and run.data.tags["kind"] == "test"
    local = client.download_artifacts(parent, "config/operative_config.gin", str(tmp_path))
    assert Path(local).read_text() == "evolve.budget = 10\n"
    children = _child_runs(client, parent)
    assert set(children) == {"evolve", "funnel"}
    assert children["evolve"].info.run_id == evolve_id
    assert children["evolve"].data.params == {"population": "8"}
    assert all(c.info.status == "FINISHED" for c in children.values())
    funnel = _table(client, children["funnel"].info.run_id, "tables/funnel.json", tmp_path)
    assert funnel["data"] == [["a", "B", 1.5]]


def test_stage_that_raises_is_marked_failed_and_keeps_its_candidates(store, tmp_path):
    tracker = Tracker("cfg", flush_rows=1000)
    with pytest.raises(ZeroDivisionError):
        with tracker.stage("evolve") as run_id:
            tracker.log_candidates(_records(12))
            1 / 0  # noqa: B018
    client = MlflowClient(store)
    assert client.get_run(run_id).info.status == "FAILED"
    assert len(_table(client, run_id, CANDIDATES_TABLE, tmp_path)["data"]) == 12


def test_plots_are_logged_as_artifacts(store):
    tracker = Tracker("cfg")
    records = _records(40)
    with tracker.stage("evolve") as run_id:
        tracker.log_candidates(records[:20])
        tracker.mark_restart(20, "from_best")
        tracker.log_candidates(records[20:])
        steps = tracker.log_lineage("h3")
        tracker.log_figure(plots.loss_curves({"mnist": {"adamw": [1.0, 0.5]}}), "plots/bench.png")
    artifacts = {f.path for f in MlflowClient(store).list_artifacts(run_id, "plots")}
    assert artifacts == {"plots/fitness.png", "plots/lineage.png", "plots/bench.png"}
    assert [s.structural_hash for s in steps] == ["h0", "h1", "h2", "h3"]


def test_simplification_logs_before_after_and_their_diff(store, tmp_path):
    tracker = Tracker("cfg")
    before = Program.parse("a = g * 1.0\nb = sign(g)\nupdate = b * lr\n")
    after = Program.parse("b = sign(g)\nupdate = b * lr\n")
    with tracker.stage("simplify") as run_id:
        tracker.log_simplification(before, after)
    client = MlflowClient(store)

    def text(p):
        return Path(client.download_artifacts(run_id, p, str(tmp_path))).read_text()

    assert Program.parse(text("winner/before.txt")) == before
    assert Program.parse(text("winner/after.txt")) == after
    assert "-a = g * 1.0" in text("winner/simplification.diff")
    counts = {k: v for k, v in client.get_run(run_id).data.metrics.items() if "statements" in k}
    assert counts == {"statements_before": 3.0, "statements_after": 2.0}


def test_lineage_follows_parent_hashes_from_seed_and_shows_each_change():
    seed = seeds.lion()
    child = Program.parse(seed.to_text().replace("0.99", "0.98"))
    grandchild = Program.parse(child.to_text().replace("u = sign(c)", "u = tanh(c)"))
    other = seeds.signsgd()

    def rec(i, p, parent, mutation, gen, fitness=1.0):
        h = p.structural_hash()
        return CandidateRecord(i, p.to_text(), h, "", parent, mutation, gen, "proxy", fitness)

    records = [
        rec(0, seed, "", "seed", 0),
        rec(1, other, seed.structural_hash(), "insert", 1),
        rec(2, child, seed.structural_hash(), "change_argument", 1),
        rec(3, child, seed.structural_hash(), "change_argument", 1, fitness=-1.0),  # cache hit
        rec(4, grandchild, child.structural_hash(), "change_op", 2, fitness=2.0),
    ]
    steps = lineage(records, grandchild.structural_hash())
    assert [s.mutation for s in steps] == ["seed", "change_argument", "change_op"]
    assert [s.fitness for s in steps] == [1.0, 1.0, 2.0]  # the first record of each hash
    assert steps[0].diff == ""
    assert "-m = interp(g, m, 0.99)" in steps[1].diff and "+m = interp(g, m, 0.98)" in steps[1].diff
    assert "+u = tanh(c)" in steps[2].diff
    assert lineage(records, "unknown") == []


def test_log_lineage_refuses_a_hash_that_is_not_a_str(store):
    tracker = Tracker("cfg")
    with tracker.stage("simplify"), pytest.raises(TypeError, match="winner_hash.*method"):
        tracker.log_lineage(seeds.adamw().structural_hash)  # the method, not its value


def test_lineage_stops_on_a_cycle():
    a = CandidateRecord(0, "x", "ha", "", "hb", "insert", 1, "proxy", 0.0)
    b = CandidateRecord(1, "y", "hb", "", "ha", "insert", 2, "proxy", 0.0)
    assert [s.structural_hash for s in lineage([a, b], "hb")] == ["ha", "hb"]


def test_fitness_plot_marks_each_restart_and_skips_non_finite_points():
    fig = plots.fitness_over_candidates([0.1, -math.inf, 0.3, 0.2], [(2, "seed"), (3, "best")])
    ax = fig.axes[0]
    assert len(ax.collections[0].get_offsets()) == 3
    vertical = [ln for ln in ax.lines if len(set(ln.get_xdata())) == 1]
    assert sorted(ln.get_xdata()[0] for ln in vertical) == [2, 3]
    best = next(ln for ln in ax.lines if ln.get_label() == "best so far")
    assert list(best.get_ydata()) == [0.1, 0.1, 0.3, 0.3]


def test_pivot_turns_funnel_rows_into_per_program_stage_scores():
    rows = [
        {"program": "p1", "stage": "A", "fitness": 1.0},
        {"program": "p1", "stage": "B", "fitness": 2.5},
        {"program": "p2", "stage": "A", "fitness": None},
    ]
    scores = plots.pivot(rows, "program", "stage", "fitness")
    assert scores["p1"] == {"A": 1.0, "B": 2.5}
    assert math.isnan(scores["p2"]["A"])


def test_funnel_and_loss_curve_plots_draw_one_line_per_program_and_panel_per_task():
    fig = plots.funnel({"p1": {"A": 1.0, "B": 2.0, "C": 3.0}, "p2": {"A": 0.5}}, ["A", "B", "C"])
    lines = fig.axes[0].lines
    assert [len(ln.get_xdata()) for ln in lines] == [3, 1]
    fig = plots.loss_curves({"t1": {"adamw": [3, 2], "lion": [3, 1]}, "t2": {"adamw": [1, 0.5]}})
    assert [len(ax.lines) for ax in fig.axes] == [2, 1]
    assert fig.axes[0].get_yscale() == "log"
