"""The discover flow end to end: Prefect's test harness, a temporary MLflow store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from mlflow import MlflowClient

from flows.prefect_flows import discover_flow
from pipeline import Program, ProgramOptimizer, seeds
from pipeline.registry import load_optimizer, load_program

SMOKE = str(Path(__file__).resolve().parent.parent / "gin" / "smoke.gin")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def discovered(tmp_path_factory, prefect_harness, empty_store):

    root = tmp_path_factory.mktemp("discover")
    shutil.copy(empty_store, root / "mlflow.db")  # MLflow's tables made once per session
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.chdir(root)
    try:
        with prefect_harness():
            out = discover_flow([SMOKE], [], str(root / "run"), None, False)
        yield out, root, uri
    finally:
        mp.undo()


def _runs(uri: str, experiment: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId")}
    return client, parent, children


def test_discover_logs_a_parent_run_with_a_child_per_stage(discovered):
    out, _, uri = discovered
    client, parent, children = _runs(uri, "smoke")
    assert parent.info.run_id == out["run_id"]
    assert {"evolve", "funnel", "simplify", "benchmark"} <= set(children)
    assert parent.data.tags["seed"] == "0"
    reads_lr = Program.parse(out["winner"] or out["champion"]).reads_lr
    assert parent.data.tags["winner_reads_lr"] == str(reads_lr)
    assert parent.data.tags["champion"] == ("discovered" if out["beat_baseline_in_funnel"]
                                            else "baseline")
    arts = [a.path for a in client.list_artifacts(parent.info.run_id, "config")]
    assert any(p.endswith(".gin") for p in arts)


def test_the_candidates_table_has_one_row_per_candidate(discovered, tmp_path):
    out, _, uri = discovered
    client, _, children = _runs(uri, "smoke")
    evolve = children["evolve"].info.run_id
    path = client.download_artifacts(evolve, "candidates.json", str(tmp_path))
    raw = json.loads(Path(path).read_text())
    rows = [dict(zip(raw["columns"], r, strict=True)) for r in raw["data"]]
    assert len(rows) == out["evolve"]["candidates_evaluated"] == 48
    assert [r["index"] for r in rows] == list(range(48))
    assert raw["columns"][:5] == ["program", "fitness", "mutation", "generation", "reason"]
    assert {"structural_hash", "fingerprint", "parent_hash", "cache_hit"} <= set(raw["columns"])
    assert all(r["reason"] for r in rows if r["fitness"] is None)  # every worst says why
    trained = sum(1 for r in rows if not r["cache_hit"] and r["structural_hash"])
    assert trained == out["evolve"]["evaluations"]


def test_metrics_and_plots_exist(discovered):
    _, _, uri = discovered
    client, parent, children = _runs(uri, "smoke")
    evolve = children["evolve"].info.run_id
    history = client.get_metric_history(evolve, "best_fitness")
    assert history and all(np.isfinite(m.value) for m in history)
    trained = client.get_metric_history(evolve, "evaluations")
    assert trained and trained[-1].step == 48  # one count of trained candidates, per step
    assert not {"evaluated", "candidates_evaluated"} & set(children["evolve"].data.metrics)
    plots = set()
    for run in [parent, *children.values()]:
        plots |= {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    for name in ("fitness.png", "funnel.png", "benchmark_loss_curves.png", "lineage.png"):
        assert any(p.endswith(name) for p in plots), (name, plots)
    tables = {a.path for a in client.list_artifacts(children["funnel"].info.run_id, "tables")}
    assert any(p.endswith("funnel.json") for p in tables)


def test_the_lineage_names_the_winner_and_starts_from_the_seed(discovered, tmp_path):
    _, _, uri = discovered
    client, _, children = _runs(uri, "smoke")
    simplify = children["simplify"].info.run_id

    def text(path: str) -> str:
        return Path(client.download_artifacts(simplify, path, str(tmp_path))).read_text()

    winner = Program.parse(text("winner/before.txt"))  # what was simplified: the funnel's pick
    lineage = text("winner/lineage.md")
    assert lineage.startswith(f"# lineage of {winner.structural_hash()}\n"), lineage[:200]
    assert "\n## 0. seed (generation 0," in lineage, lineage[:400]
    first = lineage.split("\n## 0. seed", 1)[1].split("```\n", 2)[1]  # step 0's program
    assert Program.parse(first).structural_hash() == seeds.adamw().structural_hash()  # base.gin


def test_the_winner_is_registered_as_champion_and_trains_a_keras_model(discovered):
    out, _, uri = discovered
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("lionforge-discovered", "champion")
    assert str(version.version) == str(out["model_version"])
    program = load_program("models:/lionforge-discovered@champion", tracking_uri=uri)
    assert program.to_text() == out["champion"]
    # the funnel's winner only if it beat the baseline at every stage; else the baseline
    assert out["champion"] == (out["winner"] if out["beat_baseline_in_funnel"]
                               else seeds.adamw().to_text())

    opt = load_optimizer("models:/lionforge-discovered@champion", learning_rate=1e-2,
                         tracking_uri=uri)
    assert isinstance(opt, ProgramOptimizer)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1))).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=opt, loss="mse")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=20, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.5 * before


def test_discover_returns_the_comparison_table(discovered):
    out, root, _ = discovered
    names = {row["optimizer"] for row in out["benchmark_table"]}
    assert names == {"discovered", "keras_adamw", "keras_lion"}
    assert "keras_lion" in out["benchmark"]
    summary = json.loads((root / "run" / "summary.json").read_text())
    assert summary["candidates_evaluated"] == 48


def test_the_parent_run_is_the_summary_two_runs_are_compared_by(discovered):
    out, _, uri = discovered
    client, parent, children = _runs(uri, "smoke")
    exp = client.get_experiment_by_name("smoke")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # not GenAI
    m = parent.data.metrics
    bench = {r["optimizer"]: r["mean"] for r in out["benchmark_table"]}
    assert m["bench_teacher_discovered"] == pytest.approx(bench["discovered"])
    assert m["bench_teacher_keras_lion"] == pytest.approx(bench["keras_lion"])
    assert m["bench_teacher_delta_vs_adamw"] == pytest.approx(
        bench["discovered"] - bench["keras_adamw"])
    assert m["best_proxy_fitness"] == pytest.approx(out["evolve"]["best_fitness"])
    assert "funnel_C_adamw" in m  # the baseline on the funnel's last stage
    note = parent.data.tags["mlflow.note.content"]
    assert out["champion"].rstrip() in note
    assert "## Benchmark" in note and "| teacher |" in note
    assert 'load_optimizer("models:/lionforge-discovered@champion"' in note
    # flat params, one per setting, uncut; each stage carries its own
    p = parent.data.params
    assert p["Proxy.tasks"] == '["teacher"]' and p["FunnelSettings.stages.C.task"] == "teacher"
    assert p["Hurdles.baseline"] == seeds.adamw().to_text()  # multi-line, not cut
    assert p["EvolutionConfig.population_size"] == "16"
    assert "EvolutionConfig.population_size" in children["evolve"].data.params
    assert "FunnelSettings.top_k" in children["funnel"].data.params
    assert "FunnelSettings.top_k" not in children["benchmark"].data.params
    assert children["benchmark"].data.params["BenchmarkSettings.tasks"] == '["teacher"]'


def test_the_registered_version_carries_a_model_card(discovered):
    out, _, uri = discovered
    client = MlflowClient(uri)
    model = client.get_registered_model("lionforge-discovered")
    assert "lionforge" in model.description and "reads_lr" in model.description
    version = client.get_model_version_by_alias("lionforge-discovered", "champion")
    champion = Program.parse(out["champion"])
    tags = version.tags
    assert tags["reads_lr"] == str(champion.reads_lr)
    assert tags["config"] == "smoke.gin"
    assert tags["champion"] == ("discovered" if out["beat_baseline_in_funnel"] else "baseline")
    assert tags["structural_hash"] == champion.structural_hash()
    assert tags["funnel_C"].count("±") == 1
    if out["beat_baseline_in_funnel"]:  # the benchmark measured the registered program
        assert float(tags["bench_delta_vs_adamw.teacher"]) == pytest.approx(
            next(r["mean"] for r in out["benchmark_table"] if r["optimizer"] == "discovered")
            - next(r["mean"] for r in out["benchmark_table"] if r["optimizer"] == "keras_adamw"),
            abs=1e-3)
    assert champion.to_text().rstrip() in version.description
    assert "load_optimizer(" in version.description


def test_the_cli_summary_ends_with_the_runs_address_in_the_mlflow_ui(discovered, capsys):
    from flows.cli import _print_discover

    out, _, uri = discovered
    _, parent, _ = _runs(uri, "smoke")
    _print_discover(out)
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[-1] == (f"MLflow run: http://127.0.0.1:5000/#/experiments/"
                         f"{parent.info.experiment_id}/runs/{parent.info.run_id}"
                         "?workflowType=machine_learning")
    assert f"mlflow ui --backend-store-uri {uri}" in lines[-2]
