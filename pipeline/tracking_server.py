"""Where MLflow lives: the default tracking URI, a quick reachability probe of a server, the
UI address of a run, opening an experiment (with its artifact location) and starting or
reopening a run, and the git commit a run is tagged with. Used by
:class:`pipeline.tracking.Tracker`, the registry and the CLI.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import RunStatus
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

__all__ = [
    "EXPERIMENT_KIND",
    "TrackingUnavailable",
    "check_reachable",
    "default_artifact_location",
    "default_tracking_uri",
    "git_commit",
    "open_experiment",
    "run_url",
    "start_run",
]

# MLflow 3 records an experiment's kind in this tag (without it, its UI infers one): a search
# is model work, not GenAI. Which mode the UI opens in follows the address (`run_url`).
EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TAG = (EXPERIMENT_KIND, "custom_model_development")


class TrackingUnavailable(ConnectionError):
    """The MLflow tracking server cannot be reached (or keeps failing)."""


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingUnavailable` unless an ``http(s)`` tracking server answers
    within ``timeout`` seconds (one request to its ``/health``; any HTTP answer counts).
    Other URIs (sqlite, files) are not probed."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return  # it answered
    except (http.client.InvalidURL, ValueError) as err:
        raise TrackingUnavailable(
            f"MLflow tracking URI {tracking_uri} is not a valid URL ({err}); point "
            "MLFLOW_TRACKING_URI at a running server or a sqlite:/// file"
        ) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingUnavailable(
            f"MLflow tracking server {tracking_uri} is unreachable ({reason}); start it, or "
            "point MLFLOW_TRACKING_URI at a running server or a sqlite:/// file"
        ) from None


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else sqlite ``mlflow.db`` in the working directory."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return "sqlite:///" + Path("mlflow.db").resolve().as_posix()


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where a run opens in the MLflow UI: on the tracking server itself, or, for a local
    store, on ``mlflow ui``'s default address (started with that store)."""
    base = (tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://"))
            else "http://127.0.0.1:5000")
    # MLflow 3 opens in its GenAI mode unless the address asks for model training
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def default_artifact_location(tracking_uri: str) -> str | None:
    """``mlartifacts/`` next to a sqlite file; None (the server decides) for anything else."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or ":memory:" in tracking_uri:
        return None
    return (Path(tracking_uri[len(prefix) :]).resolve().parent / "mlartifacts").as_uri()


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The checked-out commit of the git repository at ``cwd``, or "" when there is none."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def open_experiment(client: MlflowClient, name: str, tracking_uri: str,
                    artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created (artifacts at ``artifact_location``, default
    :func:`default_artifact_location`) when there is none; marked as model development."""
    found = client.get_experiment_by_name(name)
    if found is None:
        location = artifact_location or default_artifact_location(tracking_uri)
        return client.create_experiment(name, location, tags=dict([EXPERIMENT_KIND_TAG]))
    if EXPERIMENT_KIND not in found.tags:  # made before lionforge set it
        client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND_TAG)
    return found.experiment_id


def start_run(client: MlflowClient, experiment_id: str, name: str, tags: dict[str, str],
              parent_id: str | None = None, run_id: str | None = None) -> str:
    """A new run ``name`` of the experiment (a child of ``parent_id`` if given) with
    ``tags``; or, with ``run_id``, that run of the experiment set running again."""
    if run_id is not None:
        found = client.get_run(run_id)
        if found.info.experiment_id != experiment_id:
            raise ValueError(f"run {run_id} is not in experiment {experiment_id}")
        client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        return run_id
    tags = {MLFLOW_RUN_NAME: name, **tags}
    if parent_id is not None:
        tags[MLFLOW_PARENT_RUN_ID] = parent_id
    return client.create_run(experiment_id, tags=tags, run_name=name).info.run_id
