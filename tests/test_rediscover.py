"""The rediscovery experiment: seeded discovers under one parent run, classified, resumable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows import rediscover
from pipeline import seeds

SMOKE = str(Path(__file__).resolve().parent.parent / "gin" / "smoke.gin")


@pytest.mark.parametrize("text", ["", "0,,1", "a,b", "1.5", "0,0"])
def test_a_bad_seed_list_is_a_clear_error(text):
    with pytest.raises(ValueError, match="--seeds"):
        rediscover.parse_seeds(text)


def test_seeds_parse_in_order():
    assert rediscover.parse_seeds("3, 0,1") == (3, 0, 1)


def _out(rule: str | None, best: str, scores: dict) -> dict:
    table = [{"optimizer": o, "task": t, "mean": m} for (o, t), m in scores.items()]
    return {"winner": rule, "evolve": {"best_program": best}, "benchmark_table": table,
            "run_id": "r"}


def test_a_row_classifies_the_winner_and_counts_benchmark_wins():
    scores = {("discovered", "a"): -1.0, ("keras_adamw", "a"): -2.0, ("keras_lion", "a"): -0.5,
              ("discovered", "b"): -1.0, ("keras_adamw", "b"): -0.5, ("keras_lion", "b"): -3.0}
    row = rediscover.row_of(4, _out(seeds.lion().to_text(), seeds.adamw().to_text(), scores),
                            cpu_s=120.0, wall_s=90.0)
    assert row["class"] == "sign-momentum" and row["from_funnel"]
    assert (row["beats_adamw"], row["beats_lion"]) == ("1/2", "1/2")
    assert row["cpu_minutes"] == 2.0
    # nothing passed the funnel: the search's best is what is classified
    fallback = rediscover.row_of(5, _out(None, seeds.adamw().to_text(), scores), 0.0, 0.0)
    assert fallback["class"] == "adam-like" and not fallback["from_funnel"]
    table = rediscover.format_table([row, fallback])
    assert table.splitlines()[-1] == "rediscovered sign-momentum in 1 of 2 seeds"


@pytest.mark.slow
def test_rediscover_nests_a_discover_per_seed_and_never_reruns_a_finished_seed(
        tmp_path, monkeypatch, prefect_harness, empty_store):

    from flows.prefect_flows import rediscover_flow

    shutil.copy(empty_store, tmp_path / "mlflow.db")  # MLflow's tables made once per session
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    root = str(tmp_path / "rd")
    params = ["EvolveSettings.budget = 16"]
    with prefect_harness():
        rows = rediscover_flow([SMOKE], params, (0, 1), root)
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("smoke")

        def runs(name):
            return [r for r in client.search_runs([exp.experiment_id])
                    if r.info.run_name == name]

        [parent] = runs("rediscover")
        discovers = runs("discover")
        assert len(discovers) == 2
        assert {r.data.tags["mlflow.parentRunId"] for r in discovers} == {parent.info.run_id}
        assert {r.data.tags["seed"] for r in discovers} == {"0", "1"}
        assert [r["seed"] for r in rows] == [0, 1]
        assert all(r["class"] in {c.value for c in rediscover.RuleClass} for r in rows)
        assert parent.data.metrics["seeds"] == 2
        table = client.download_artifacts(parent.info.run_id, "rediscover.txt", str(tmp_path))
        assert Path(table).read_text().splitlines()[-1].startswith("rediscovered sign-momentum")
        # Interrupted after seed 0 finished and during seed 1: seed 0 is not run again, seed
        # 1 resumes its own run dir (its search is complete) and reopens its own MLflow run.
        (Path(root) / "seed_1" / rediscover.ROW_FILE).unlink()
        first = json.loads((Path(root) / "seed_0" / rediscover.ROW_FILE).read_text())
        again = rediscover_flow([SMOKE], params, (0, 1), root)
        assert again[0] == first and again[1]["run_id"] == rows[1]["run_id"]
        assert len(runs("discover")) == 2 and len(runs("rediscover")) == 1
