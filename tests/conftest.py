"""Fixtures shared by the test modules."""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

# Each pytest process (each pytest-xdist worker) gets a Prefect home of its own, so that the
# temporary Prefect servers of two workers never share one sqlite database, and no test
# writes into the developer's ~/.prefect.  Set before Prefect is imported; subprocesses that
# the tests start inherit it.
_PREFECT_HOME = tempfile.mkdtemp(prefix=f"prefect-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An sqlite file with MLflow's tables created once (creating them takes seconds)."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("template") / "store.db"
    MlflowClient("sqlite:///" + db.as_posix()).search_experiments()
    return db


@pytest.fixture
def store(empty_store, tmp_path, monkeypatch) -> str:
    """A fresh MLflow sqlite store in tmp_path, selected through MLFLOW_TRACKING_URI."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(empty_store, tmp_path / "store.db")
    uri = "sqlite:///" + (tmp_path / "store.db").as_posix()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _search_records(run_dir: Path) -> list[dict]:
    """A search's candidate records, in order, as its run dir holds them."""
    lines = (run_dir / "search.records.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _assert_same_records(records: list[dict], expected: list[dict]) -> None:
    """Record for record the same search: program, fitness and rejection first (the readable
    failure), then every field."""
    assert len(records) == len(expected)
    for got, want in zip(records, expected, strict=True):
        assert (got["program"], got["fitness"], got["rejection"]) == (
            want["program"], want["fitness"], want["rejection"]), got["index"]
        assert got == want


@pytest.fixture(scope="session")
def search_records():
    """``search_records(run_dir)``: a search's candidate records, in order."""
    return _search_records


@pytest.fixture(scope="session")
def assert_same_records():
    """``assert_same_records(records, expected)``: the runner-equivalence check (with the same
    seed and config, every task runner writes the same records)."""
    return _assert_same_records


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """``free_port()``: a port on 127.0.0.1 that nothing listens on (yet)."""
    return _free_port


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One Prefect server for this pytest process (each pytest-xdist worker its own), started
    on first use and stopped when the session ends; its database in a folder of its own.

    Starting a server and creating its database costs some 15 s of CPU.  The tests that only
    need *a* server (flows run against Prefect, a deployment applied) share this one: in this
    process through :func:`prefect_harness`, in a subprocess through ``PREFECT_API_URL``.
    The temporary server Prefect starts where no ``PREFECT_API_URL`` is set is tested where
    that is the point (tests/test_scaleout.py, the reference run in tests/test_resume.py).

    It waits as long for the server as ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``
    allows (the Makefile sets it), else 90 s: on 2 busy cores creating the database took
    longer than Prefect's own harness waits (30 s), and a scale-out test failed on it.
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    db = tmp_path_factory.mktemp("prefect-server") / "prefect.db"
    wait = int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90"))
    server = SubprocessASGIServer(port=_free_port())
    # The server process takes its settings from the environment it is started with.
    with temporary_settings(
            updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{db}"}):
        server.start(timeout=wait)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prefect_harness(prefect_server):
    """``with prefect_harness():`` runs flows against :func:`prefect_server` as Prefect's
    ``prefect_test_harness()`` runs them against a server of its own: ``PREFECT_API_URL``
    names it, code that asks for Prefect's temporary server gets it, and on the way out
    Prefect's log and event workers are drained, so nothing is sent after the block."""
    return functools.partial(_harness, prefect_server)


@contextlib.contextmanager
def _harness(server):
    import prefect.context
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:  # as prefect_test_harness() does before it stops its server
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:
            pass  # the worker was never started
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    prior = SubprocessASGIServer._instances.get(None)
    SubprocessASGIServer._instances[None] = server
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            with prefect.context._temporary_global_settings_context(
                    prefect.context.get_settings_context()):
                yield
                run_coro_as_sync(drain())
    finally:
        if prior is None:
            SubprocessASGIServer._instances.pop(None, None)
        else:
            SubprocessASGIServer._instances[None] = prior


def pytest_collection_modifyitems(config, items):
    """Files that hold end-to-end (``slow``) tests run first, each file still whole and in
    order.  With pytest-xdist handing out whole files (``--dist loadfile``, as ``make test``
    does), the long files start at once and the fast ones fill in behind them, so no worker is
    left finishing a long file alone at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: order kept within
