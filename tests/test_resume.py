"""Crash and resume: the append-only checkpoint, and a killed `lionforge evolve` that resumes
(with the command's console and its refusal of another search's run dir)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows.cli import main
from pipeline import Program
from pipeline.evolve import Search, evaluate_each
from pipeline.numpy_tasks import Quadratic
from pipeline.run_writer import CANDIDATES_TABLE
from pipeline.screen import Verdict
from pipeline.search_config import EvolutionConfig
from pipeline.store import records_path

CONFIG = EvolutionConfig(population_size=16, tournament_size=4, batch_size=8,
                         restart_patience=40, fec_cache_size=20)
TASK = evaluate_each(Quadratic(steps=40))


def _state(search: Search) -> tuple:
    return (
        [r.to_dict() for r in search.records],
        search.population,
        search.best,
        search.rng.bit_generator.state,
        list(search.screen.structural.entries.items()),
        (search.screen.structural.lookups, search.screen.structural.hits),
        list(search.screen.fec.entries.items()),
        (search.screen.fec.lookups, search.screen.fec.hits),
        search.stats.rejections,
    )


# ---- the checkpoint format ---------------------------------------------------------------------


def test_a_checkpoint_holds_no_history_only_the_count_of_appended_records(tmp_path):
    path = tmp_path / "s.json"
    search = Search(CONFIG, rng_seed=1, checkpoint=path)
    search.run(TASK, 41)
    small = path.stat().st_size
    search.run(TASK, 201)
    state = json.loads(path.read_text())
    assert state["records"] == 201 and "fec" not in state and "structural" not in state
    assert path.stat().st_size < 1.2 * small  # the checkpoint does not grow with the history
    lines = records_path(path).read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(201))


def test_record_lines_written_after_the_last_checkpoint_are_dropped_on_resume(tmp_path):
    """A crash between appending a batch's records and replacing the checkpoint."""
    path = tmp_path / "s.json"
    Search(CONFIG, rng_seed=2, checkpoint=path).run(TASK, 57)
    covered = records_path(path).read_bytes()
    ahead = Search(CONFIG, rng_seed=2, checkpoint=tmp_path / "ahead.json")
    ahead.run(TASK, 65)
    extra = records_path(tmp_path / "ahead.json").read_bytes()[len(covered):]
    assert extra.count(b"\n") == 8
    records_path(path).write_bytes(covered + extra + b'{"index": 65, "prog')  # torn last line

    resumed = Search.resume(path)
    assert len(resumed.records) == 57
    assert records_path(path).read_bytes() == covered  # cut back to what the checkpoint covers
    resumed.run(TASK, 200)
    full = Search(CONFIG, rng_seed=2)
    full.run(TASK, 200)
    assert _state(resumed) == _state(full)
    lines = records_path(path).read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(200))


def test_resume_rebuilds_both_caches_exactly_including_lru_order_and_counters(tmp_path):
    path = tmp_path / "s.json"
    full = Search(CONFIG, rng_seed=4)
    full.run(TASK, 300)
    for stop in (9, 97, 161):
        part = Search(CONFIG, rng_seed=4, checkpoint=path)
        part.run(TASK, stop)
        resumed = Search.resume(path)
        assert _state(resumed) == _state(part)
        resumed.run(TASK, 300)
        assert _state(resumed) == _state(full)
    assert len(full.screen.fec.entries) == 20  # the LRU did evict


def test_a_records_file_shorter_than_its_checkpoint_is_refused(tmp_path):
    path = tmp_path / "s.json"
    Search(CONFIG, rng_seed=0, checkpoint=path).run(TASK, 33)
    lines = records_path(path).read_text().splitlines(keepends=True)
    records_path(path).write_text("".join(lines[:-1]))
    with pytest.raises(ValueError, match="fewer than the 33 records"):
        Search.resume(path)


def test_an_evaluator_rejection_is_recorded_counted_and_never_cached(tmp_path):
    path = tmp_path / "s.json"
    search = Search(CONFIG, rng_seed=0, checkpoint=path)
    search.run(TASK, 9)
    programs = search.propose()
    records = search.tell([Verdict(rejection="timeout") for _ in programs])
    timed_out = [r for r in records if r.rejection == "timeout"]
    # the evaluated ones, and their in-batch duplicates, which share their verdict
    assert len([r for r in timed_out if not r.cache_hit]) == len(programs) > 0
    assert all(r.fitness == -math.inf for r in timed_out)
    assert search.stats.rejections["timeout"] == len(timed_out)
    for r in timed_out:
        assert r.structural_hash not in search.screen.structural.entries
        assert r.fingerprint not in search.screen.fec.entries
    assert _state(Search.resume(path)) == _state(search)


# ---- a killed `lionforge evolve` resumes ------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 80  # smoke: five batches of 16


def _args(run_dir: Path) -> list[str]:
    return ["evolve", "--gin_file", "gin/smoke.gin", "--run_dir", str(run_dir),
            "--budget", str(BUDGET),
            "--gin_param", "TrackingSettings.flush_rows = 16"]  # a table append every batch


def _evolve(run_dir: Path, db: Path, *flags: str, prefect_api: str | None = None,
            **popen) -> subprocess.Popen:
    """``lionforge evolve`` as a user runs it: its own process, its output not a terminal;
    Prefect's temporary server, or the one at ``prefect_api``."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "PYTHONPATH": str(ROOT),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PREFECT_API_URL", None)
    if prefect_api:
        env["PREFECT_API_URL"] = prefect_api
    cmd = [sys.executable, "-m", "flows.cli", *_args(run_dir), *flags]
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, **popen}
    return subprocess.Popen(cmd, cwd=db.parent, env=env, text=True, **streams)


def _finish(proc: subprocess.Popen) -> tuple[str, str | None]:
    """(stdout, stderr) of a run that must succeed; stderr None where it went to stdout."""
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (out + (err or ""))[-3000:]
    return out, err


def _checkpointed(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "search.json").read_text())["records"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def _tables(db: Path, tmp: Path) -> dict[str, list[int]]:
    """Per evolve run in the store: the candidate indices in its candidates table."""
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("smoke")
    out = {}
    for run in client.search_runs([exp.experiment_id]):
        names = {f.path for f in client.list_artifacts(run.info.run_id)}
        rows = []
        if CANDIDATES_TABLE in names:
            local = client.download_artifacts(run.info.run_id, CANDIDATES_TABLE, str(tmp))
            table = json.loads(Path(local).read_text())
            rows = [row[table["columns"].index("index")] for row in table["data"]]
        out[run.info.run_id] = rows
    return out


@pytest.mark.slow
def test_a_sigkilled_evolve_resumes_where_it_stopped_and_logs_every_candidate_once(
        tmp_path, monkeypatch, capsys, prefect_server, empty_store):
    """Also the command's console: quiet by default, libraries' lines back with -v; and a
    run dir of another search refused.

    The killed run and its resumption report to this pytest process' Prefect server and
    start from an MLflow store whose tables exist (making either costs seconds of CPU); the
    reference run starts Prefect's temporary server and creates its store, as a user's first
    run does."""
    run_dir, db = tmp_path / "run", tmp_path / "crash" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(empty_store, db)
    api = prefect_server.api_url
    proc = _evolve(run_dir, db, prefect_api=api, start_new_session=True)  # and its children
    deadline = time.monotonic() + 240
    while not 2 * 16 < _checkpointed(run_dir) < BUDGET - 16:
        assert proc.poll() is None, "evolve ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-search, the whole process group
    proc.wait()
    killed_at = _checkpointed(run_dir)
    records_before = records_path(run_dir / "search.json").read_bytes()
    batches_before = {p.name: (p.stat().st_mtime_ns, p.read_bytes())
                      for p in (run_dir / "batches").iterdir()}
    logged_before = _tables(db, tmp_path / "a")
    assert not (run_dir / "summary.json").exists()
    assert BUDGET > killed_at > 32 and len(logged_before) == 1

    resumed, _ = _finish(_evolve(run_dir, db, "-v", prefect_api=api))  # again, verbose
    assert "Finished in state Completed" in resumed  # -v: the libraries' log lines are back
    reference = tmp_path / "reference"
    (reference / "db").mkdir(parents=True)
    _, err = _finish(_evolve(reference / "run", reference / "db" / "mlflow.db",
                             stderr=subprocess.PIPE))
    # Not a terminal: plain progress lines, no carriage-return bar.
    assert f"evolve: {BUDGET}/{BUDGET} candidates" in err and "\r" not in err
    # Quiet: Prefect's task-run and server lines go to the run dir's log, not the console.
    assert "prefect" not in err.lower(), err[-2000:]
    log = (reference / "run" / "lionforge.log").read_text()
    assert "Finished in state Completed" in log and "temporary server" in log

    # Resumed, not started over: the records the checkpoint covered are byte-identical, and
    # every batch evaluated before the kill was reused (not trained again, not rewritten).
    covered = b"".join(records_before.splitlines(keepends=True)[:killed_at])
    assert records_path(run_dir / "search.json").read_bytes().startswith(covered)
    for name, (mtime, data) in batches_before.items():
        path = run_dir / "batches" / name
        assert (path.stat().st_mtime_ns, path.read_bytes()) == (mtime, data)
    assert sorted(p.name for p in (run_dir / "batches").iterdir()) == sorted(
        p.name for p in (reference / "run" / "batches").iterdir())
    # The same MLflow run was continued: every candidate in it exactly once.
    logged = _tables(db, tmp_path / "b")
    assert list(logged) == list(logged_before)
    (indices,) = logged.values()
    assert indices == list(range(BUDGET))
    assert 0 < len(next(iter(logged_before.values()))) <= killed_at
    # And the outcome is the uninterrupted run's.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary == json.loads((reference / "run" / "summary.json").read_text())
    assert {"best_program", "best_fitness", "candidates_evaluated"} <= set(summary)
    Program.parse(summary["best_program"])
    assert summary["candidates_evaluated"] == BUDGET
    assert records_path(run_dir / "search.json").read_bytes() == records_path(
        reference / "run" / "search.json").read_bytes()

    # The same run dir with another search setting is refused, naming it; nothing changes.
    # (In this process: a refusal comes before Prefect starts.)
    monkeypatch.chdir(db.parent)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    files = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main([*_args(run_dir), "--gin_param", "EvolutionConfig.population_size = 8",
                 "--gin_param", "Experiment.seed = 3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "EvolutionConfig.population_size (16 there, 8 now)" in err[0]
    assert "Experiment.seed" in err[0]
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == files
    # A run dir from before settings were recorded is refused too: its config is unknown.
    (run_dir / "settings.json").unlink()
    assert main(_args(run_dir)) == 2
    assert "recorded no settings" in capsys.readouterr().err


def test_a_json_write_that_fails_part_way_leaves_the_old_file_whole(tmp_path):
    from pipeline.store import write_json

    path = tmp_path / "deep" / "state.json"
    write_json(path, {"best": 1.5, "rows": [1, 2]})  # creates the folders
    before = path.read_text()
    with pytest.raises(ValueError):  # NaN refused mid-document, after some bytes were written
        write_json(path, {"rows": list(range(1000)), "best": math.nan}, allow_nan=False)
    assert path.read_text() == before and json.loads(before) == {"best": 1.5, "rows": [1, 2]}
