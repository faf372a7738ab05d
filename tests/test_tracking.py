"""The tracker against a real MLflow sqlite store in tmp_path, read back through MlflowClient."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline import plots, seeds
from pipeline.lineage import lineage
from pipeline.program import Program
from pipeline.records import CandidateRecord
from pipeline.run_writer import CANDIDATES_TABLE
from pipeline.stats import SearchStats
from pipeline.tracking import TABLE_COLUMNS, Tracker
from pipeline.tracking_server import EXPERIMENT_KIND, default_tracking_uri


def _records(n: int, start: int = 0) -> list[CandidateRecord]:
    """n synthetic candidates: every 3rd rejected, every 11th otherwise diverged (worst
    fitness, no rejection), every 5th an FEC hit, every 7th structural."""
    text = seeds.adamw().to_text()
    out = []
    for i in range(start, start + n):
        rejected = i % 3 == 0
        diverged = not rejected and i % 11 == 0
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
                fitness=-math.inf if rejected or diverged else math.sin(i) + i / 100,
                cache_hit=hit,
                rejection="invalid shape" if rejected else "",
            )
        )
    return out


def _log(tracker: Tracker, stats: SearchStats, batch: list[CandidateRecord]) -> None:
    """Log a batch as a search does: its one SearchStats counts the batch first."""
    stats.count(batch)
    tracker.log_candidates(batch, stats)


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
    stats = SearchStats()  # the search's counts, which the tracker reads
    with tracker.run("discover", seed=0):
        with tracker.child_run("evolve") as run_id:
            for i in range(0, 250, 30):  # batches that do not line up with flush_rows
                _log(tracker, stats, records[i : i + 30])
    client = MlflowClient(store)
    table = _table(client, run_id, CANDIDATES_TABLE, tmp_path)
    assert table["columns"] == list(TABLE_COLUMNS)
    rows = [dict(zip(table["columns"], r, strict=True)) for r in table["data"]]
    assert [r["index"] for r in rows] == list(range(250))
    assert [r["structural_hash"] for r in rows] == [r.structural_hash for r in records]
    assert rows[3]["fitness"] is None and rows[3]["reason"] == "invalid shape"
    assert rows[11]["fitness"] is None and rows[11]["reason"] == "diverged"
    assert rows[4]["fitness"] == pytest.approx(records[4].fitness) and rows[4]["reason"] == ""
    assert rows[5]["cache_hit"] == "fec" and rows[7]["cache_hit"] == "structural"
    # The artifacts live inside tmp_path (next to the sqlite file), not in the repository.
    assert client.get_run(run_id).info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())


def test_metrics_are_logged_per_step_with_best_so_far_and_hit_rates(store):
    tracker = Tracker("cfg", flush_rows=1000, metrics_every=50)
    records = _records(230)
    stats = SearchStats()  # the search's counts, which the tracker reads
    with tracker.child_run("evolve") as run_id:
        for i in range(0, 230, 30):  # the last batch, 20, brings 50 since the step at 180
            _log(tracker, stats, records[i : i + 30])
    client = MlflowClient(store)
    best = client.get_metric_history(run_id, "best_fitness")
    assert [m.step for m in best] == [60, 120, 180, 230]  # between batches, never inside one
    for m in best:
        expected = max(r.fitness for r in records[: m.step] if math.isfinite(r.fitness))
        assert m.value == pytest.approx(expected)
    hits = {m.step: m.value for m in client.get_metric_history(run_id, "cache_hit_rate")}
    assert hits[230] == pytest.approx(sum(1 for r in records if r.cache_hit) / 230)
    evaluations = client.get_metric_history(run_id, "evaluations")[-1].value
    assert evaluations == sum(r.evaluated for r in records)
    assert client.get_metric_history(run_id, "evaluated") == []  # one name per figure
    speed = client.get_metric_history(run_id, "candidates_per_s")
    assert [m.step for m in speed] == [60, 120, 180, 230] and all(m.value > 0 for m in speed)


def test_candidates_per_s_covers_whole_batches_so_it_does_not_saw_tooth(store):
    """Batches of 150 with a step every 100 candidates used to put a step inside each batch:
    rates alternated between a real one and microseconds of bookkeeping (~90,000/s)."""
    tracker = Tracker("cfg", flush_rows=1000, metrics_every=100)
    records, pause = _records(450), 0.05  # each batch "takes" at least 50 ms to evaluate
    stats = SearchStats()  # the search's counts, which the tracker reads
    with tracker.child_run("evolve") as run_id:
        for i in range(0, 450, 150):
            time.sleep(pause)
            _log(tracker, stats, records[i : i + 150])
    speed = MlflowClient(store).get_metric_history(run_id, "candidates_per_s")
    assert [m.step for m in speed] == [150, 300, 450]
    assert all(0 < m.value <= 150 / pause for m in speed)


def test_a_resumed_stage_logs_only_the_missing_rows_and_times_only_new_batches(store, tmp_path):
    records = _records(200)
    first = Tracker("cfg", flush_rows=10, metrics_every=50)
    with first.child_run("evolve") as run_id:
        _log(first, SearchStats(), records[:90])  # a crash would leave these 90 in the table
    again = Tracker("cfg", flush_rows=10, metrics_every=50)
    with again.child_run("evolve", run_id=run_id):
        stats = SearchStats()
        stats.count(records[:150])  # a resumed search's counts
        assert again.resume_candidates(records[:150], stats) == 90
        time.sleep(0.01)
        _log(again, stats, records[150:])
    client = MlflowClient(store)
    table = _table(client, run_id, CANDIDATES_TABLE, tmp_path)
    rows = [dict(zip(table["columns"], r, strict=True)) for r in table["data"]]
    assert [r["index"] for r in rows] == list(range(200))  # each candidate once
    assert all(r["reason"] for r in rows if r["fitness"] is None)
    steps = {m.step: m.value for m in client.get_metric_history(run_id, "evaluations")}
    assert steps[150] == sum(r.evaluated for r in records[:150])  # the backlog's own step
    speed = [m.step for m in client.get_metric_history(run_id, "candidates_per_s")]
    assert 150 not in speed and 200 in speed  # the backlog was not timed; new batches are


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
        with tracker.child_run("evolve", params={"population": 8}) as evolve_id:
            _log(tracker, SearchStats(), _records(5))
        with tracker.child_run("funnel"):
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
        with tracker.child_run("evolve") as run_id:
            _log(tracker, SearchStats(), _records(12))
            1 / 0  # noqa: B018
    client = MlflowClient(store)
    assert client.get_run(run_id).info.status == "FAILED"
    assert len(_table(client, run_id, CANDIDATES_TABLE, tmp_path)["data"]) == 12


def test_plots_are_logged_as_artifacts(store):
    tracker = Tracker("cfg")
    records = _records(40)
    stats = SearchStats()  # the search's counts, which the tracker reads
    with tracker.child_run("evolve") as run_id:
        _log(tracker, stats, records[:20])
        tracker.mark_restart(20, "from_best")
        _log(tracker, stats, records[20:])
        steps = tracker.log_lineage("h3")
        tracker.log_figure(plots.loss_curves({"mnist": {"adamw": [1.0, 0.5]}}), "plots/bench.png")
    artifacts = {f.path for f in MlflowClient(store).list_artifacts(run_id, "plots")}
    assert artifacts == {"plots/fitness.png", "plots/lineage.png", "plots/bench.png"}
    assert [s.structural_hash for s in steps] == ["h0", "h1", "h2", "h3"]


def test_simplification_logs_before_after_and_their_diff(store, tmp_path):
    tracker = Tracker("cfg")
    before = Program.parse("a = g * 1.0\nb = sign(g)\nupdate = b * lr\n")
    after = Program.parse("b = sign(g)\nupdate = b * lr\n")
    with tracker.child_run("simplify") as run_id:
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
    with tracker.child_run("simplify"), pytest.raises(TypeError, match="winner_hash.*method"):
        tracker.log_lineage(seeds.adamw().structural_hash)  # the method, not its value


def test_lineage_stops_on_a_cycle():
    a = CandidateRecord(0, "x", "ha", "", "hb", "insert", 1, "proxy", 0.0)
    b = CandidateRecord(1, "y", "hb", "", "ha", "insert", 2, "proxy", 0.0)
    assert [s.structural_hash for s in lineage([a, b], "hb")] == ["ha", "hb"]



def test_the_funnel_stage_labels_programs_by_rank_and_behaviour_and_the_baseline_by_name(
    store, tmp_path
):
    from types import SimpleNamespace

    from flows.settings import FunnelSettings
    from flows.steps import funnel_step
    from pipeline.funnel import Stage
    from pipeline.numpy_tasks import Quadratic

    def evaluate(programs, stage, seed):  # NumPy in place of the TF evaluator
        task = Quadratic(dim=int(stage.scale), steps=60, lr=0.3, seed=seed)
        return [task(p) for p in programs]

    ranked = [seeds.adamw(beta_1=0.7), seeds.lion(), Program.parse("update = g * lr\n")]
    search = SimpleNamespace(records=[
        CandidateRecord(i, p.to_text(), p.structural_hash(), "", "", "insert", 1, "proxy", 3.0 - i)
        for i, p in enumerate(ranked)])
    cfg = FunnelSettings(top_k=3, stages=(Stage("B", "quadratic", 8), Stage("C", "quadratic", 32)),
                         seeds=(0, 1), lr_multipliers=(1 / 3, 1.0, 3.0))
    tracker = Tracker("cfg")
    with tracker.child_run("funnel") as run_id:
        assert funnel_step(search, cfg, evaluate, tracker).winner == ranked[0]
    client = MlflowClient(store)
    table = _table(client, run_id, "tables/funnel.json", tmp_path)
    rows = [dict(zip(table["columns"], r, strict=True)) for r in table["data"]]
    on_b = [r["label"] for r in rows if r["stage"] == "B"]
    assert on_b == ["AdamW (baseline)", "#1 adam-like (winner)", "#2 sign-momentum", "#3 sgd"]
    assert {f.path for f in client.list_artifacts(run_id, "plots")} == {"plots/funnel.png"}


def test_a_record_says_why_its_fitness_is_worst_and_whether_it_cost_an_evaluation():
    timed_out = CandidateRecord(0, "x", "h", "", "", "insert", 1, "proxy", -math.inf,
                                rejection="timeout")
    assert timed_out.evaluated and timed_out.reason == "timeout"  # trained, then given up on
    invalid = replace(timed_out, structural_hash="", rejection="undefined_read")
    assert not invalid.evaluated and invalid.reason == "undefined_read"
    repeat = replace(timed_out, cache_hit="structural", rejection="")
    assert not repeat.evaluated and repeat.reason == "diverged"
    assert replace(repeat, fitness=0.5).reason == ""


def test_the_metrics_are_the_search_s_own_statistics(store):
    """The search counts once (its SearchStats); the tracker's metrics read those counts."""
    from pipeline.evolve import Search, evaluate_each
    from pipeline.numpy_tasks import Quadratic
    from pipeline.search_config import EvolutionConfig

    search = Search(EvolutionConfig(population_size=16, tournament_size=4, batch_size=8),
                    rng_seed=0)
    tracker = Tracker("cfg", metrics_every=1)
    with tracker.child_run("evolve") as run_id:
        search.run(evaluate_each(Quadratic(steps=20)), 81,
                   on_batch=lambda batch: tracker.log_candidates(batch, search.stats))
    client = MlflowClient(store)
    last = {k: client.get_metric_history(run_id, k)[-1] for k in (
        "evaluations", "structural_hit_rate", "fec_hit_rate", "rejection_rate", "best_fitness")}
    assert {m.step for m in last.values()} == {search.stats.candidates} == {81}
    s = search.stats
    assert last["evaluations"].value == s.evaluations
    assert last["structural_hit_rate"].value == pytest.approx(s.structural_hit_rate)
    assert last["fec_hit_rate"].value == pytest.approx(s.fec_hit_rate)
    assert last["rejection_rate"].value == pytest.approx(s.rejected / 81)
    assert last["best_fitness"].value == pytest.approx(search.best.fitness)
    assert s.structural_hits + s.fec_hits > 0 and s.evaluations > 0
