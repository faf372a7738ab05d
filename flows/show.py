"""``lionforge show`` and ``lionforge export``: read a program and what is recorded about it.

They only read: no gin, no Prefect, and an MLflow store that is not there is an error, never
created (MLflow would create a missing sqlite file or folder just by being asked).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from pipeline.program import Program

__all__ = ["MissingProgram", "Source", "read_source", "run_read_only", "show_text"]

_PROGRAM_KEYS = ("best_program", "winner")  # where a summary.json holds its program
_MAX_TABLE_LINES = 60  # of a step's text table printed by `show`


class MissingProgram(LookupError):
    """A model URI that MLflow cannot resolve: no store, or no such model, version or run."""


@dataclass(frozen=True)
class Source:
    """A program and what is recorded about it, one line per fact (for ``show``)."""

    program: Program
    facts: tuple[str, ...] = ()


def read_source(ref: str) -> Source:
    """The program ``ref`` names (a file, a run dir or its summary.json, a ``models:/`` or
    ``runs:/`` URI) and what is recorded about it. Only reads: creates no MLflow store."""
    if ref.startswith(("models:/", "runs:/")):
        return _from_mlflow(ref)
    return _from_file(ref)


def _from_file(ref: str) -> Source:
    from pipeline.program import Program

    path = Path(ref)
    if path.is_dir():
        path = path / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"no program at {ref!r} (not a file, a run dir or a model URI)")
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".json":
        return Source(Program.parse(text), (f"from {path}",))
    data = json.loads(text)
    data = data if isinstance(data, dict) else {}
    program = next((data[k] for k in _PROGRAM_KEYS if isinstance(data.get(k), str)), None)
    if program is None:
        raise ValueError(f"{path} holds no 'best_program' or 'winner'")
    recorded = {k: v for k, v in data.items() if k not in _PROGRAM_KEYS
                and (v is None or isinstance(v, int | float | bool)
                     or isinstance(v, str) and "\n" not in v)}
    return Source(Program.parse(program), (f"from {path}", *_listing("", recorded)))


def _from_mlflow(ref: str) -> Source:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    from pipeline.registry import load_program
    from pipeline.tracking_server import default_tracking_uri

    uri = default_tracking_uri()
    _require_store(uri, ref)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    facts, version = [f"{ref} (tracking URI {uri})"], None
    try:
        if ref.startswith("models:/"):
            name, number = get_model_name_and_version(client, ref)
            version = client.get_model_version(name, str(number))
            aliases = f" (aliases: {', '.join(version.aliases)})" if version.aliases else ""
            facts += [f"{version.name} version {version.version}{aliases}",
                      *_listing("version tag ", version.tags)]
            run_id = version.run_id
            # The version just described, even if the alias moves meanwhile.
            program = load_program(f"models:/{name}/{version.version}", tracking_uri=uri)
        else:
            run_id = RunsArtifactRepository.parse_runs_uri(ref)[0]
            program = load_program(ref, tracking_uri=uri)
        if run_id:
            facts += _run_facts(client, run_id, "registered by run" if version else "run")
    except MlflowException as err:
        message = (err.message.strip().splitlines() or ["not found"])[0]
        raise MissingProgram(f"{ref}: {message} (tracking URI {uri})") from None
    return Source(program, tuple(facts))


def _require_store(uri: str, ref: str) -> None:
    """Raise unless the store at ``uri`` is there: an ``http(s)`` server that answers, an
    sqlite file holding MLflow's tables, a local store's folder. Creates nothing (MLflow
    would create a missing sqlite file or folder, tables included, just by being asked)."""
    from pipeline.tracking_server import check_reachable

    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # as the Tracker does
        check_reachable(uri)
        return
    missing = MissingProgram(f"{ref} not found: no MLflow store at tracking URI {uri} (run "
                             "where its mlflow.db is, or set MLFLOW_TRACKING_URI)")
    if uri.startswith("sqlite:"):
        path = uri.removeprefix("sqlite:").removeprefix("///").split("?", 1)[0]
        if not path or path == ":memory:" or not _is_mlflow_db(Path(path)):
            raise missing
    elif uri.startswith("file:") or "://" not in uri:  # a local file store: a folder
        from urllib.parse import unquote, urlparse

        folder = unquote(urlparse(uri).path) if uri.startswith("file:") else uri
        if not Path(folder).is_dir():
            raise missing
    # Other database servers: MLflow reports what it cannot find.


def _is_mlflow_db(path: Path) -> bool:
    """Whether ``path`` is an sqlite file holding MLflow's tables (opened read-only)."""
    import sqlite3

    if not path.is_file():
        return False
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except sqlite3.Error:
        return False
    return "alembic_version" in tables  # MLflow's schema marker


def _run_facts(client: MlflowClient, run_id: str, heading: str) -> list[str]:
    """The run's own tags and metrics, then each of its steps' (child runs): metrics and
    the text tables at the top of their artifacts (``funnel.txt``, ``benchmark.txt``)."""
    run = client.get_run(run_id)
    lines = [f"{heading} {run_id} ({run.info.run_name})",
             *_listing("  ", _user_tags(run.data.tags)), *_listing("  ", run.data.metrics)]
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    for child in children:
        stage = child.data.tags.get("stage", child.info.run_name)
        lines.append(f"stage {stage} (run {child.info.run_id})")
        lines += _listing("  ", {**_user_tags(child.data.tags), **child.data.metrics})
        for item in client.list_artifacts(child.info.run_id):
            if not item.is_dir and item.path.endswith(".txt"):
                lines.append(f"  {item.path}:")
                lines += ["    " + line
                          for line in _read_text(client, child.info.run_id, item.path)]
    return lines


def _user_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith("mlflow.") and k != "stage"}


def _read_text(client: MlflowClient, run_id: str, path: str) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(client.download_artifacts(run_id, path, tmp))
        lines = local.read_text(encoding="utf-8", errors="replace").splitlines()
    if len(lines) > _MAX_TABLE_LINES:
        lines = [*lines[:_MAX_TABLE_LINES], f"... ({len(lines) - _MAX_TABLE_LINES} more lines)"]
    return lines


def _listing(indent: str, items: dict) -> list[str]:
    return [f"{indent}{k} = {_value(v)}" for k, v in sorted(items.items())]


def _value(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def show_text(source: Source) -> str:
    """``show``'s output: the facts as ``#`` comments (characters a program may not hold
    replaced by '?'), whether the rule reads lr, then the program."""
    from pipeline.program import IGNORES_LR

    lr = (f"warning: {IGNORES_LR}" if not source.program.reads_lr
          else "reads lr: yes (learning_rate= and schedules scale its step)")
    comments = "".join(f"# {_printable(line)}\n" for line in (*source.facts, lr))
    return comments + source.program.to_text()


def _printable(line: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in line)


def run_read_only(args) -> int:
    """``show`` and ``export``: no gin, no Prefect; errors are one line."""
    from pipeline.program import IGNORES_LR
    from pipeline.statement import ProgramError

    try:
        source = read_source(args.program)
        if args.command == "show":
            print(show_text(source), end="")
            return 0
        from pipeline.export import write_module

        write_module(source.program, args.out, class_name=args.class_name)
        print(f"wrote {args.out}")
        if not source.program.reads_lr:
            print(f"lionforge export: warning: {IGNORES_LR}", file=sys.stderr)
        return 0
    except (ProgramError, OSError, ValueError, MissingProgram) as err:  # OSError: also
        print(f"lionforge {args.command}: error: {err}", file=sys.stderr)  # unreachable
        return 2
