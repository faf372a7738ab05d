"""MLflow tracking for searches: a parent run per ``discover``, a child run per stage.

Example::

    tracker = Tracker("quickstart")
    with tracker.run("discover", config_text=gin_text, params=params, seed=0):
        with tracker.stage("evolve"):
            for batch in search:                    # lists of CandidateRecord
                tracker.log_candidates(batch)
        with tracker.stage("simplify"):
            tracker.log_simplification(winner, simplified)
            tracker.log_lineage(winner.structural_hash())
            tracker.register(simplified)

Everything goes through one ``MlflowClient`` with explicit run ids (no fluent active-run
state). Candidates are buffered and appended to the run's ``candidates.json`` table in
batches whose size grows with the table (so total writing stays linear in the number of
candidates); metrics are buffered and sent with ``log_batch``. The tracker is a stateful
logger for one flow: use it from one thread (Prefect tasks return records to the flow, and
the flow logs them).

Failures: an ``http(s)`` tracking URI is probed once at start (:func:`check_reachable`, a
few seconds at most) and an unreachable server is a :class:`TrackingUnavailable` error, not
a hang; MLflow's own HTTP retries (minutes by default) are cut to one unless
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` is set. Mid-run writes of the candidates table and of
metrics are retried ``retries`` times with exponential backoff; if they still fail the rows
stay buffered (nothing is lost) and go out with the next flush. The candidates table is the
source of truth for what was logged: before a retry and on :meth:`Tracker.resume_candidates`
the tracker counts the rows already in it, so no candidate is written twice.
"""

from __future__ import annotations

import difflib
import http.client
import json
import logging
import math
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from pipeline import plots
from pipeline.plots import LineageStep
from pipeline.program import Program
from pipeline.records import CandidateRecord

__all__ = [
    "CANDIDATES_TABLE",
    "Tracker",
    "TrackingUnavailable",
    "check_reachable",
    "default_tracking_uri",
    "git_commit",
    "lineage",
]

CANDIDATES_TABLE = "candidates.json"
_MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
_BATCH_PARAMS = 100  # log_batch limits
# MLflow 3 records an experiment's kind in this tag (without it, its UI infers one): a search
# is model work, not GenAI. Which mode the UI opens in follows the address (`run_url`).
EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TAG = (EXPERIMENT_KIND, "custom_model_development")
_BATCH_METRICS = 1000
_log = logging.getLogger(__name__)


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


def _default_artifact_location(tracking_uri: str) -> str | None:
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


def lineage(records: Iterable[CandidateRecord], winner_hash: str) -> list[LineageStep]:
    """The winner's ancestor chain, seed first, following ``parent_hash -> structural_hash``.

    For each hash the first record carrying it is used (later ones are cache hits of it).
    The chain stops at a record without a parent, at a parent never logged, or at a cycle.
    """
    first: dict[str, CandidateRecord] = {}
    for r in records:
        first.setdefault(r.structural_hash, r)
    chain: list[CandidateRecord] = []
    seen: set[str] = set()
    h = winner_hash
    while h and h in first and h not in seen:
        seen.add(h)
        chain.append(first[h])
        h = first[h].parent_hash
    chain.reverse()
    steps, previous = [], None
    for r in chain:
        diff = ""
        if previous is not None:
            diff = "".join(
                difflib.unified_diff(
                    previous.program.splitlines(keepends=True),
                    r.program.splitlines(keepends=True),
                    "parent",
                    "child",
                    n=1,
                )
            )
        steps.append(
            LineageStep(r.structural_hash, r.mutation, r.generation, r.fitness, r.program, diff)
        )
        previous = r
    return steps


# The candidates table's columns: what a reader scans first (the program, its fitness, how
# it was made, why it failed) leads; the bookkeeping follows.
TABLE_COLUMNS = ("program", "fitness", "mutation", "generation", "reason", "cache_hit", "index",
                 "stage", "structural_hash", "parent_hash", "fingerprint", "lr_multipliers")


def _row(record: CandidateRecord) -> dict:
    """The record as a table row; a worst fitness is null (JSON has no infinities) and
    ``reason`` says why (``CandidateRecord.reason``, which subsumes ``rejection``)."""
    d = record.to_dict() | {"reason": record.reason}
    return {k: d[k] for k in TABLE_COLUMNS}


def _text(program: Program | str) -> str:
    return program.to_text() if isinstance(program, Program) else program


@dataclass
class _OpenRun:
    """Buffers and running statistics of one open run (internal)."""

    run_id: str
    started: float
    rows: list[dict] = field(default_factory=list)
    rows_written: int = 0
    metrics: list[Metric] = field(default_factory=list)
    seen: int = 0
    evaluations: int = 0
    structural_hits: int = 0
    fec_hits: int = 0
    rejected: int = 0
    best: float = -math.inf
    fitness: list[float] = field(default_factory=list)
    worst: dict[str, int] = field(default_factory=dict)  # worst-fitness candidates per reason
    restarts: list[tuple[int, str]] = field(default_factory=list)
    last_point: tuple[int, float] = (0, 0.0)  # (candidates seen, time) at the last metric step
    arrived: float = 0.0  # when the last batch of candidates was logged


class Tracker:
    """Logs a search to MLflow: one experiment per config, nested runs, batched writes.

    Args:
        experiment: the experiment name (the gin config's name).
        tracking_uri: defaults to :func:`default_tracking_uri`.
        artifact_location: where a *new* experiment stores artifacts; defaults to
            ``mlartifacts/`` next to a sqlite database, else the server's default.
        flush_rows: candidates buffered before the table is appended to (the batch also
            grows to a quarter of the rows already written, to keep appends linear overall).
        metrics_every: candidates between two metric steps.
        retries: further attempts of a failed mid-run write (table or metrics).
        retry_backoff_s: the wait before the first retry; it doubles with each retry.
        connect_timeout_s: how long the start-up probe of an ``http(s)`` server waits.
    """

    def __init__(
        self,
        experiment: str,
        tracking_uri: str | None = None,
        *,
        artifact_location: str | None = None,
        flush_rows: int = 2000,
        metrics_every: int = 100,
        retries: int = 3,
        retry_backoff_s: float = 1.0,
        connect_timeout_s: float = 5.0,
    ):
        if flush_rows < 1 or metrics_every < 1:
            raise ValueError(
                "`flush_rows` and `metrics_every` must be >= 1. "
                f"Received: flush_rows={flush_rows}, metrics_every={metrics_every}"
            )
        if retries < 0 or retry_backoff_s < 0:
            raise ValueError(
                "`retries` and `retry_backoff_s` must be >= 0. "
                f"Received: retries={retries}, retry_backoff_s={retry_backoff_s}"
            )
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.retries, self.retry_backoff_s = retries, retry_backoff_s
        if self.tracking_uri.startswith(("http://", "https://")):
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # we retry ourselves
            check_reachable(self.tracking_uri, connect_timeout_s)
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self.flush_rows = flush_rows
        self.metrics_every = metrics_every
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
            if EXPERIMENT_KIND not in found.tags:  # made before lionforge set it
                self.client.set_experiment_tag(self.experiment_id, *EXPERIMENT_KIND_TAG)
        else:
            location = artifact_location or _default_artifact_location(self.tracking_uri)
            self.experiment_id = self.client.create_experiment(
                experiment, location, tags=dict([EXPERIMENT_KIND_TAG]))
        self._stack: list[_OpenRun] = []
        self._first_by_hash: dict[str, CandidateRecord] = {}

    # ----- runs -----------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """The innermost open run's id."""
        return self._top().run_id

    def _top(self) -> _OpenRun:
        if not self._stack:
            raise RuntimeError("No open run: use `with tracker.run(...)` or `tracker.stage(...)`.")
        return self._stack[-1]

    @contextmanager
    def run(
        self,
        name: str = "discover",
        *,
        config_text: str = "",
        params: Mapping[str, object] | None = None,
        seed: int | None = None,
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ) -> Iterator[str]:
        """A run (the parent of the stages opened inside it); yields its id.

        Logs ``config_text`` (the operative gin config) as ``config/operative_config.gin``,
        ``params``, and tags: the git commit when there is one, the seed, and ``tags``.
        With ``run_id`` (a run of this experiment, e.g. one a crash left open) the run is
        reopened instead and nothing of the above is logged again.
        """
        all_tags = dict(tags or {})
        commit = git_commit()
        if commit:
            all_tags.update({"git_commit": commit, MLFLOW_GIT_COMMIT: commit})
        if seed is not None:
            all_tags["seed"] = str(seed)
        with self._open(name, all_tags, run_id) as opened:
            if config_text and run_id is None:
                self.client.log_text(opened, config_text, "config/operative_config.gin")
            if params and run_id is None:
                self.log_params(params)
            yield opened

    @contextmanager
    def stage(
        self,
        name: str,
        *,
        params: Mapping[str, object] | None = None,
        run_id: str | None = None,
    ) -> Iterator[str]:
        """A child run of the open run (a top-level run when none is open); yields its id.

        On exit the buffered candidates and metrics are written, and a stage that logged
        candidates gets ``plots/fitness.png``. ``run_id`` reopens an earlier stage run.
        """
        with self._open(name, {"stage": name}, run_id) as opened:
            if params and run_id is None:
                self.log_params(params)
            yield opened

    @contextmanager
    def _open(self, name: str, tags: Mapping[str, str], run_id: str | None) -> Iterator[str]:
        if run_id is not None:
            found = self.client.get_run(run_id)
            if found.info.experiment_id != self.experiment_id:
                raise ValueError(f"run {run_id} is not in experiment {self.experiment_id}")
            self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        else:
            tags = {MLFLOW_RUN_NAME: name, **tags}
            if self._stack:
                tags[MLFLOW_PARENT_RUN_ID] = self._stack[-1].run_id
            run_id = self.client.create_run(self.experiment_id, tags=tags,
                                            run_name=name).info.run_id
        now = time.perf_counter()
        self._stack.append(_OpenRun(run_id, now, last_point=(0, now)))
        status = RunStatus.FINISHED
        try:
            yield run_id
        except KeyboardInterrupt:
            status = RunStatus.KILLED
            raise
        except BaseException:
            status = RunStatus.FAILED
            raise
        finally:
            try:
                self._close_top()
            finally:
                top = self._stack.pop()
                self.client.set_terminated(top.run_id, RunStatus.to_string(status))

    def _close_top(self) -> None:
        top = self._stack[-1]
        if top.seen and top.last_point[0] != top.seen:
            self._metric_step(top)
        self.flush(strict=True)
        if top.seen:
            fig = plots.fitness_over_candidates(top.fitness, top.restarts, top.worst)
            self.log_figure(fig, "plots/fitness.png")

    # ----- candidates and metrics -----------------------------------------------------------

    def log_candidates(self, records: Iterable[CandidateRecord]) -> None:
        """Buffer one batch of candidates for the open run's table and update its metrics.

        After a batch that brings ``metrics_every`` or more candidates since the last metric
        step, a step is recorded (step = candidates seen): ``best_fitness``,
        ``cache_hit_rate``, ``structural_hit_rate``, ``fec_hit_rate``, ``rejection_rate``,
        ``evaluations`` (candidates that went to the evaluator) and ``candidates_per_s``
        over the whole batches since the last step. Steps fall between batches, never inside
        one: a step inside a batch measured microseconds of bookkeeping as a rate.
        """
        top = self._top()
        self._buffer(top, records)
        top.arrived = time.perf_counter()
        if top.seen - top.last_point[0] >= self.metrics_every:
            self._metric_step(top)

    def _buffer(self, top: _OpenRun, records: Iterable[CandidateRecord]) -> None:
        for r in records:
            top.rows.append(_row(r))
            self._count(top, r)
        if len(top.rows) >= max(self.flush_rows, top.rows_written // 4):
            self._flush_rows(top)

    def _count(self, top: _OpenRun, r: CandidateRecord) -> None:
        top.seen += 1
        top.fitness.append(r.fitness)
        if r.cache_hit == "structural":
            top.structural_hits += 1
        elif r.cache_hit == "fec":
            top.fec_hits += 1
        if r.rejection:
            top.rejected += 1
        if r.evaluated:
            top.evaluations += 1
        if not math.isfinite(r.fitness):
            top.worst[r.reason] = top.worst.get(r.reason, 0) + 1
        if math.isfinite(r.fitness) and r.fitness > top.best:
            top.best = r.fitness
        self._first_by_hash.setdefault(r.structural_hash, r)

    def resume_candidates(self, records: Sequence[CandidateRecord]) -> int:
        """Continue a (reopened) run's candidates table from a resumed search's records.

        Counts the rows already in the open run's table (the source of truth: a crash may
        have come before or after any write), counts those records in the running
        statistics without logging them again, and buffers the rest. Returns how many were
        already logged.
        """
        top = self._top()
        if top.rows or top.seen:
            raise RuntimeError("resume_candidates() must come before any log_candidates()")
        done = self._retrying("count the candidates table", lambda: self.table_rows(top.run_id))
        if done > len(records):
            raise ValueError(f"run {top.run_id}'s candidates table holds {done} rows but the "
                             f"search has only {len(records)} candidates: not this search's run")
        for r in records[:done]:
            self._count(top, r)
        top.rows_written = done
        self._buffer(top, records[done:])
        if len(records) > done:  # a step for them, with no rate: they were not timed here
            self._metric_step(top, timed=False)
        top.last_point = (top.seen, time.perf_counter())
        return done

    def table_rows(self, run_id: str | None = None) -> int:
        """Rows in a run's (default: the open run's) candidates table; 0 if it has none."""
        run_id = run_id or self.run_id
        if CANDIDATES_TABLE not in {f.path for f in self.client.list_artifacts(run_id)}:
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(run_id, CANDIDATES_TABLE, tmp)
            with open(local, encoding="utf-8") as f:
                return len(json.load(f)["data"])

    def _retrying(self, what: str, fn, before_retry=None):
        """``fn()``, retried ``self.retries`` times with doubling waits; re-raises the last
        error as :class:`TrackingUnavailable`."""
        wait = self.retry_backoff_s
        for attempt in range(self.retries + 1):
            try:
                if attempt and before_retry is not None:
                    before_retry()
                return fn()
            except Exception as err:  # noqa: BLE001 - any failure of the store is retried
                if attempt == self.retries:
                    raise TrackingUnavailable(
                        f"MLflow ({self.tracking_uri}): could not {what} after "
                        f"{self.retries + 1} attempts: {err}"
                    ) from err
                _log.warning("MLflow: could not %s (%s); retrying in %.1f s", what, err, wait)
                time.sleep(wait)
                wait *= 2

    def mark_restart(self, at: int, kind: str = "restart") -> None:
        """Mark a restart before candidate ``at`` (shown on the stage's fitness plot)."""
        self._top().restarts.append((at, kind))

    def _metric_step(self, top: _OpenRun, timed: bool = True) -> None:
        """Metrics at step ``top.seen``; ``candidates_per_s`` over the batches that arrived
        since the last step (not when ``timed`` is False)."""
        n0, t0 = top.last_point
        seen = max(top.seen, 1)
        values = {
            "structural_hit_rate": top.structural_hits / seen,
            "fec_hit_rate": top.fec_hits / seen,
            "cache_hit_rate": (top.structural_hits + top.fec_hits) / seen,
            "rejection_rate": top.rejected / seen,
            "evaluations": float(top.evaluations),
        }
        if timed and top.arrived > t0:
            values["candidates_per_s"] = (top.seen - n0) / (top.arrived - t0)
        if math.isfinite(top.best):
            values["best_fitness"] = top.best
        self._buffer_metrics(top, values, top.seen)
        top.last_point = (top.seen, top.arrived)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Buffer metrics for the open run at ``step`` (sent with ``log_batch``)."""
        self._buffer_metrics(self._top(), metrics, step)

    def _buffer_metrics(self, top: _OpenRun, metrics: Mapping[str, float], step: int) -> None:
        ms = int(time.time() * 1000)
        top.metrics.extend(Metric(k, float(v), ms, int(step)) for k, v in metrics.items())
        if len(top.metrics) >= _BATCH_METRICS:
            self._flush_metrics(top)  # lenient: kept on failure

    def _flush_metrics(self, top: _OpenRun, strict: bool = False) -> None:
        while top.metrics:
            chunk = top.metrics[:_BATCH_METRICS]
            try:
                self._retrying("log metrics",
                               lambda c=chunk: self.client.log_batch(top.run_id, metrics=c))
            except TrackingUnavailable as err:
                if strict:
                    raise
                _log.warning("%s; %d metric values kept for the next flush", err,
                             len(top.metrics))
                return
            del top.metrics[: len(chunk)]

    def _flush_rows(self, top: _OpenRun, strict: bool = False) -> None:
        if not top.rows:
            return
        import pandas as pd  # an MLflow dependency; imported lazily, it is slow to import

        def write() -> None:
            if top.rows:
                table = pd.DataFrame.from_records(top.rows, columns=list(top.rows[0]))
                self.client.log_table(top.run_id, table, CANDIDATES_TABLE)
                top.rows_written += len(top.rows)
                top.rows.clear()

        def resync() -> None:  # a failed append may have landed: count, drop what did
            landed = self.table_rows(top.run_id) - top.rows_written
            if landed > 0:
                del top.rows[:landed]
                top.rows_written += landed

        try:
            self._retrying("append to the candidates table", write, resync)
        except TrackingUnavailable as err:
            if strict:
                raise
            _log.warning("%s; %d candidates kept for the next flush (they are in the search's "
                         "checkpoint too)", err, len(top.rows))

    def flush(self, strict: bool = True) -> None:
        """Write the open run's buffered candidates and metrics now (retried).

        ``strict``: raise :class:`TrackingUnavailable` if they still cannot be written
        (they stay buffered either way).
        """
        if self._stack:
            self._flush_rows(self._stack[-1], strict)
            self._flush_metrics(self._stack[-1], strict)

    # ----- everything else ------------------------------------------------------------------

    def log_params(self, params: Mapping[str, object]) -> None:
        """Log params (values as text, cut to MLflow's limit) on the open run."""
        items = [Param(str(k), str(v)[:_MAX_PARAM_CHARS]) for k, v in params.items()]
        for i in range(0, len(items), _BATCH_PARAMS):
            self.client.log_batch(self.run_id, params=items[i : i + _BATCH_PARAMS])

    def set_tags(self, tags: Mapping[str, object]) -> None:
        """Set tags on the open run."""
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_table(self, rows: Sequence[Mapping[str, object]], name: str) -> None:
        """Log a list of dicts (funnel, benchmark, ...) as the table ``tables/<name>.json``."""
        import pandas as pd

        self.client.log_table(self.run_id, pd.DataFrame.from_records(rows), f"tables/{name}.json")

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log ``text`` as the artifact ``artifact_file`` of the open run."""
        self.client.log_text(self.run_id, text, artifact_file)

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        """Log a matplotlib figure (e.g. from :mod:`pipeline.plots`) as ``artifact_file``."""
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_simplification(self, before: Program | str, after: Program | str) -> None:
        """Log the winner before and after simplification, their diff and statement counts."""
        b, a = _text(before), _text(after)
        self.log_text(b, "winner/before.txt")
        self.log_text(a, "winner/after.txt")
        diff = difflib.unified_diff(
            b.splitlines(keepends=True), a.splitlines(keepends=True), "before", "after"
        )
        self.log_text("".join(diff), "winner/simplification.diff")
        self.log_metrics(
            {"statements_before": b.count("\n"), "statements_after": a.count("\n")}, step=0
        )

    def log_lineage(
        self, winner_hash: str, records: Iterable[CandidateRecord] | None = None
    ) -> list[LineageStep]:
        """Log the winner's ancestor chain as ``winner/lineage.md`` and ``plots/lineage.png``.

        ``winner_hash`` is a structural hash, ``program.structural_hash()``; ``records``
        defaults to every candidate this tracker has logged.
        """
        if not isinstance(winner_hash, str):
            raise TypeError(
                "Argument `winner_hash` must be a structural hash (a str, e.g. "
                "`program.structural_hash()`). "
                f"Received: winner_hash={winner_hash!r} of type {type(winner_hash).__name__}"
            )
        steps = lineage(self._first_by_hash.values() if records is None else records, winner_hash)
        parts = [f"# lineage of {winner_hash}\n"]
        for k, s in enumerate(steps):
            parts.append(
                f"\n## {k}. {s.mutation} (generation {s.generation}, fitness {s.fitness:.6g})\n"
                f"\n```\n{s.program}```\n"
            )
            if s.diff:
                parts.append(f"\n```diff\n{s.diff}```\n")
        self.log_text("".join(parts), "winner/lineage.md")
        self.log_figure(plots.lineage(steps), "plots/lineage.png")
        return steps

    def register(self, program: Program, **kwargs):
        """Log ``program`` as an MLflow model in the open run and register it.

        Keyword arguments go to :func:`pipeline.registry.log_program_model`; returns the
        ``ModelVersion``.
        """
        from pipeline.registry import log_program_model

        return log_program_model(program, run_id=self.run_id, client=self.client, **kwargs)
