"""Scale-out: evaluation on Dask worker processes, tracking to an ``mlflow server`` on SQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows import config
from flows.prefect_flows import discover_flow, evaluate_chunk, evolve_flow
from pipeline.evaluator import Hurdles

SMOKE = str(Path(__file__).resolve().parent.parent / "gin" / "smoke.gin")

# Set in this process only; a worker that was forked from it would see it, a spawned one not.
_PARENT_MARK: int | None = None


# ---- the gin binding --------------------------------------------------------------------------


def test_task_runner_binds_a_dask_runner_to_an_existing_scheduler():
    config.parse([SMOKE], ["task_runner.kind = 'dask'",
                           "task_runner.address = 'tcp://10.0.0.5:8786'"])
    runner = config.task_runner()
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address == "tcp://10.0.0.5:8786"
    assert runner.cluster_class is None
    assert runner.duplicate() == runner  # Prefect duplicates the runner for each flow run


def test_task_runner_binds_a_local_spawned_cluster_of_n_workers():
    config.parse([SMOKE], ["task_runner.kind = 'dask'", "task_runner.n_workers = 3"])
    runner = config.task_runner()
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address is None
    assert runner.cluster_class is config.spawn_local_cluster
    assert runner.cluster_kwargs == {"n_workers": 3}
    assert runner.duplicate().cluster_kwargs == {"n_workers": 3}


def test_task_runner_threads_and_processes_are_unchanged():
    config.parse([SMOKE], [])
    assert isinstance(config.task_runner(), ThreadPoolTaskRunner)
    config.parse([SMOKE], ["task_runner.kind = 'processes'", "task_runner.max_workers = 2"])
    assert isinstance(config.task_runner(), ProcessPoolTaskRunner)


@pytest.mark.parametrize(
    ("bindings", "message"),
    [
        (["task_runner.kind = 'ray'"], "'threads', 'processes' or 'dask'"),
        (["task_runner.kind = 'dask'", "task_runner.address = '10.0.0.5'"], "tcp://host:8786"),
        (["task_runner.kind = 'dask'", "task_runner.n_workers = 0"], "n_workers must be >= 1"),
    ],
)
def test_task_runner_rejects_bad_dask_bindings_with_a_config_error(bindings, message):
    config.parse([SMOKE], bindings)
    with pytest.raises(config.ConfigError, match=message):
        config.task_runner()


def test_a_chunks_arguments_survive_pickling_for_workers():
    import cloudpickle

    hurdles = Hurdles()
    assert cloudpickle.loads(cloudpickle.dumps(hurdles)) == hurdles
    task_again = cloudpickle.loads(cloudpickle.dumps(evaluate_chunk))
    assert task_again.name == evaluate_chunk.name and task_again.retries == 2
    assert task_again.fn.__module__ == "flows.prefect_flows"


# ---- a local cluster from gin ----------------------------------------------------------------


def _parent_mark() -> int | None:
    """The mark as this process sees it: set in the test process, None in a fresh interpreter."""
    import importlib  # through sys.modules: the function may be shipped by value

    return importlib.import_module(__name__)._PARENT_MARK


@pytest.mark.slow
def test_local_dask_workers_are_pointed_at_one_temporary_prefect_server(tmp_path):
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_API_DATABASE_CONNECTION_URL,
        PREFECT_API_URL,
        PREFECT_HOME,
        temporary_settings,
    )

    config.parse([SMOKE], ["task_runner.kind = 'dask'"])
    local = config.task_runner()
    config.parse([SMOKE], ["task_runner.kind = 'dask'", "task_runner.address = 'tcp://h:8786'"])
    remote = config.task_runner()
    db = f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}"
    with temporary_settings(
        updates={PREFECT_HOME: str(tmp_path), PREFECT_API_DATABASE_CONNECTION_URL: db},
        restore_defaults={PREFECT_API_URL},
    ):
        with config.prefect_api_for(remote):  # remote workers could not reach 127.0.0.1
            assert not PREFECT_API_URL.value()
        try:
            with config.prefect_api_for(local):
                url = PREFECT_API_URL.value()
                assert url and url.startswith("http://127.0.0.1:")
                with urllib.request.urlopen(f"{url}/health", timeout=10) as r:
                    assert r.status == 200
        finally:
            SubprocessASGIServer().stop()
        assert not PREFECT_API_URL.value()


# ---- smoke.gin on 2 Dask workers, tracked to an mlflow server --------------------------------


@pytest.fixture
def mlflow_server(tmp_path, free_port):
    """An ``mlflow server`` on 127.0.0.1 with a sqlite backend store; its URI."""
    port = free_port()
    root = tmp_path / "mlflow-server"
    root.mkdir()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--serve-artifacts", "--artifacts-destination", str(root / "artifacts")],
        cwd=root, stdout=log, stderr=subprocess.STDOUT,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "mlflow server did not answer in 90 s"
            time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.slow
def test_smoke_discover_on_two_dask_workers_logs_every_candidate_once_to_an_mlflow_server(
    tmp_path, monkeypatch, mlflow_server, caplog, prefect_harness, empty_store,
    search_records, assert_same_records
):
    """Also: the search's records are the single-thread run's, record for record (as each task
    runner's are in tests/test_runners.py; the local Dask cluster's case is this one)."""
    import dask
    from distributed import Client, get_task_stream

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    # Chunks of 4: each batch of 16 becomes several tasks, so both workers get some.
    params = ["EvolveSettings.eval_chunk = 4", "EvolveSettings.budget = 32"]
    monkeypatch.setattr(sys.modules[__name__], "_PARENT_MARK", os.getpid())
    # Even where the user's Dask config asks for fork, workers are spawned.
    with (dask.config.set({"distributed.worker.multiprocessing-method": "fork"}),
          config.spawn_local_cluster(n_workers=2) as cluster):
        config.parse([SMOKE], [*params, "task_runner.kind = 'dask'",
                               f"task_runner.address = '{cluster.scheduler_address}'"])
        runner = config.task_runner()
        with Client(cluster.scheduler_address, set_as_default=False) as client:
            worker_pids = client.run(os.getpid)
            marks = client.run(_parent_mark)
            with get_task_stream(client) as stream, prefect_harness():
                out = discover_flow.with_options(task_runner=runner)(
                    [SMOKE], params, str(run_dir), None, False
                )
    summary = json.loads((run_dir / "summary.json").read_text())
    n = summary["candidates_evaluated"]
    assert n == out["evolve"]["candidates_evaluated"] == 32

    # The evaluation ran as tasks on the two worker processes, not in this one.
    assert f"existing Dask cluster at {cluster.scheduler_address}" in caplog.text
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids.values()
    assert list(marks.values()) == [None, None]  # fresh interpreters, not forks of this one
    evaluated = [t for t in stream.data if "evaluate" in t["key"]]
    assert evaluated and all(t["status"] == "OK" for t in evaluated)
    assert {t["worker"] for t in evaluated} == set(worker_pids)
    trained = summary["evaluations"]
    assert len(evaluated) >= trained / 4  # every trained candidate went through a chunk task

    # Every candidate logged exactly once, read back through the server.
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id])
    evolve = next(r for r in runs if r.info.run_name == "evolve").info.run_id
    path = client.download_artifacts(evolve, "candidates.json", str(tmp_path / "dl"))
    raw = json.loads(Path(path).read_text())
    indices = [dict(zip(raw["columns"], r, strict=True))["index"] for r in raw["data"]]
    assert sorted(indices) == list(range(n)) and len(set(indices)) == n
    # The registry lives on the server too.
    version = client.get_model_version_by_alias("lionforge-discovered", "champion")
    assert str(version.version) == str(out["model_version"])

    # The same search in this process on one thread (smoke.gin's runner), tracked elsewhere:
    # where the candidates trained changed nothing in what they scored.
    shutil.copy(empty_store, tmp_path / "store.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    config.parse([SMOKE], params)
    with prefect_harness():
        evolve_flow.with_options(task_runner=config.task_runner())(
            [SMOKE], params, str(tmp_path / "one_thread"), None, False)
    records = search_records(run_dir)
    assert len(records) == 32
    assert_same_records(records, search_records(tmp_path / "one_thread"))
