"""Fixtures shared by the test modules."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
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


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's test harness, waiting as long for its server as the environment allows.

    ``prefect_test_harness()`` waits 30 s for its temporary server unless told otherwise; on
    2 busy cores creating the server's database took longer, and a scale-out test failed on
    it.  This one waits ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` where that is
    set (the Makefile sets it), else 90 s.
    """
    from prefect.testing.utilities import prefect_test_harness

    wait = int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90"))
    return functools.partial(prefect_test_harness, server_startup_timeout=wait)


def pytest_collection_modifyitems(config, items):
    """Files that hold end-to-end (``slow``) tests run first, each file still whole and in
    order.  With pytest-xdist handing out whole files (``--dist loadfile``, as ``make test``
    does), the long files start at once and the fast ones fill in behind them, so no worker is
    left finishing a long file alone at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: order kept within
