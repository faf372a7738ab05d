"""Fixtures shared by the test modules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


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
