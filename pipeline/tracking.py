"""MLflow tracking for searches: a parent run per ``discover``, a child run per step.

The steps are evolve, funnel, simplify, benchmark and register; each child run is tagged
``stage`` with its step's name (the tag the MLflow UI filters on).

Example::

    tracker = Tracker("quickstart")
    with tracker.run("discover", config_text=gin_text, params=params, seed=0):
        with tracker.child_run("evolve"):
            for batch in search:                    # lists of CandidateRecord
                tracker.log_candidates(batch, search.stats)
        with tracker.child_run("simplify"):
            tracker.log_simplification(winner, simplified)
            tracker.log_lineage(winner.structural_hash())
            tracker.register(simplified)

Everything goes through one ``MlflowClient`` with explicit run ids (no fluent active-run
state). The pieces: :mod:`pipeline.tracking_server` (URIs, the reachability probe, the git
commit), :class:`pipeline.run_writer.RunWriter` (one run's buffered, retried writes of the
candidates table and metrics), :mod:`pipeline.lineage` (the winner's ancestry). The
tracker opens and closes the runs and turns the search's one
:class:`~pipeline.stats.SearchStats` into metric steps; it counts nothing itself. It is a
stateful logger for one flow: use it from one thread (Prefect tasks return records to the
flow, and the flow logs them).

Failures: an ``http(s)`` tracking URI is probed once at start (a few seconds at most) and an
unreachable server is a :class:`~pipeline.tracking_server.TrackingUnavailable` error, not a
hang; MLflow's own HTTP retries (minutes by default) are cut to one unless
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` is set. Mid-run writes are retried ``retries`` times
(``RunWriter``); on :meth:`Tracker.resume_candidates` the tracker counts the rows already in
the candidates table, so no candidate is written twice.
"""

from __future__ import annotations

import difflib
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Param, RunStatus, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from pipeline import plots
from pipeline.lineage import lineage, lineage_markdown
from pipeline.plots import LineageStep
from pipeline.program import Program
from pipeline.records import CandidateRecord
from pipeline.run_writer import RunWriter
from pipeline.stats import SearchStats
from pipeline.tracking_server import (
    check_reachable,
    default_tracking_uri,
    git_commit,
    open_experiment,
    start_run,
)

__all__ = ["TABLE_COLUMNS", "Tracker"]

_MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
_BATCH_PARAMS = 100  # log_batch limits

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
    """One open run: its writer, the data of its fitness plot, and its metric clock."""

    writer: RunWriter
    metrics_every: int
    stats: SearchStats = field(default_factory=SearchStats)  # the latest the run was given
    fitness: list[float] = field(default_factory=list)  # per candidate logged in this run
    restarts: list[tuple[int, str]] = field(default_factory=list)
    last_point: tuple[int, float] = (0, 0.0)  # (candidates, time) at the last metric step
    arrived: float = 0.0  # when the last batch of candidates was logged

    @property
    def run_id(self) -> str:
        return self.writer.run_id

    def log_candidates(self, records: Sequence[CandidateRecord], stats: SearchStats) -> None:
        """See :meth:`Tracker.log_candidates`."""
        self.buffer(records, stats)
        self.arrived = time.perf_counter()
        if stats.candidates - self.last_point[0] >= self.metrics_every:
            self.metric_step()

    def buffer(self, records: Sequence[CandidateRecord], stats: SearchStats) -> None:
        self.stats = stats
        self.fitness.extend(r.fitness for r in records)
        self.writer.add_rows([_row(r) for r in records])

    def resume(self, records: Sequence[CandidateRecord], stats: SearchStats) -> int:
        """See :meth:`Tracker.resume_candidates`."""
        if self.fitness:
            raise RuntimeError("resume_candidates() must come before any log_candidates()")
        done = self.writer.count_table()
        if done > len(records):
            raise ValueError(f"run {self.run_id}'s candidates table holds {done} rows but the "
                             f"search has only {len(records)} candidates: not this search's run")
        self.writer.rows_written = done
        self.stats = stats
        self.fitness.extend(r.fitness for r in records[:done])  # in the table already
        self.buffer(records[done:], stats)
        if len(records) > done:  # a step for them, with no rate: they were not timed here
            self.metric_step(timed=False)
        self.last_point = (stats.candidates, time.perf_counter())
        return done

    def metric_step(self, timed: bool = True) -> None:
        """Metrics at step ``stats.candidates``; ``candidates_per_s`` over the batches that
        arrived since the last step (not when ``timed`` is False)."""
        n0, t0 = self.last_point
        s = self.stats
        values = {
            "structural_hit_rate": s.structural_hit_rate,
            "fec_hit_rate": s.fec_hit_rate,
            "cache_hit_rate": s.hit_rate,
            "rejection_rate": s.rejection_rate,
            "evaluations": float(s.evaluations),
        }
        if timed and self.arrived > t0:
            values["candidates_per_s"] = (s.candidates - n0) / (self.arrived - t0)
        if math.isfinite(s.best):
            values["best_fitness"] = s.best
        self.writer.add_metrics(values, s.candidates)
        self.last_point = (s.candidates, self.arrived)

    def close(self) -> Figure | None:
        """The last metric step and a flush (strict); returns the fitness plot, if any."""
        if self.fitness and self.last_point[0] != self.stats.candidates:
            self.metric_step()
        self.writer.flush(strict=True)
        if not self.fitness:
            return None
        return plots.fitness_over_candidates(self.fitness, self.restarts, self.stats.worst)


class Tracker:
    """Logs a search to MLflow: one experiment per config, nested runs, batched writes.

    Args:
        experiment: the experiment name (the gin config's name).
        tracking_uri: defaults to ``tracking_server.default_tracking_uri()``.
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
        self.experiment_id = open_experiment(self.client, experiment, self.tracking_uri,
                                             artifact_location)
        self._stack: list[_OpenRun] = []
        self._first_by_hash: dict[str, CandidateRecord] = {}  # for log_lineage

    # ----- runs -----------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """The innermost open run's id."""
        return self._top().run_id

    def _top(self) -> _OpenRun:
        if not self._stack:
            raise RuntimeError("No open run: use `with tracker.run(...)` or "
                               "`tracker.child_run(...)`.")
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
        """A run (the parent of the child runs opened inside it); yields its id.

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
    def child_run(
        self,
        name: str,
        *,
        params: Mapping[str, object] | None = None,
        run_id: str | None = None,
    ) -> Iterator[str]:
        """A child run of the open run (a top-level run when none is open); yields its id.

        On exit the buffered candidates and metrics are written, and a step that logged
        candidates gets ``plots/fitness.png``. ``run_id`` reopens an earlier child run.
        """
        with self._open(name, {"stage": name}, run_id) as opened:
            if params and run_id is None:
                self.log_params(params)
            yield opened

    @contextmanager
    def _open(self, name: str, tags: Mapping[str, str], run_id: str | None) -> Iterator[str]:
        parent = self._stack[-1].run_id if self._stack else None
        run_id = start_run(self.client, self.experiment_id, name, tags, parent, run_id)
        writer = RunWriter(self.client, self.tracking_uri, run_id, flush_rows=self.flush_rows,
                           retries=self.retries, retry_backoff_s=self.retry_backoff_s)
        self._stack.append(_OpenRun(writer, self.metrics_every,
                                    last_point=(0, time.perf_counter())))
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
            try:  # the last metric step, a strict flush, and the fitness plot
                fig = self._stack[-1].close()
                if fig is not None:
                    self.log_figure(fig, "plots/fitness.png")
            finally:
                top = self._stack.pop()
                self.client.set_terminated(top.run_id, RunStatus.to_string(status))

    # ----- candidates and metrics -----------------------------------------------------------

    def log_candidates(self, records: Sequence[CandidateRecord], stats: SearchStats) -> None:
        """Buffer one batch of candidates for the open run's table; ``stats`` are the search's
        counts including them.

        After a batch that brings ``metrics_every`` or more candidates since the last metric
        step, a step is recorded (step = ``stats.candidates``): ``best_fitness``,
        ``cache_hit_rate``, ``structural_hit_rate``, ``fec_hit_rate``, ``rejection_rate``,
        ``evaluations`` (candidates that went to the evaluator) and ``candidates_per_s``
        over the whole batches since the last step. Steps fall between batches, never inside
        one: a step inside a batch measured microseconds of bookkeeping as a rate.
        """
        self._top().log_candidates(records, stats)
        for r in records:
            self._first_by_hash.setdefault(r.structural_hash, r)

    def resume_candidates(self, records: Sequence[CandidateRecord], stats: SearchStats) -> int:
        """Continue a (reopened) run's candidates table from a resumed search's records and
        ``stats`` (its counts over them).

        Counts the rows already in the open run's table (the source of truth: a crash may
        have come before or after any write) and buffers the records beyond them. Returns
        how many were already logged.
        """
        done = self._top().resume(records, stats)
        for r in records:
            self._first_by_hash.setdefault(r.structural_hash, r)
        return done

    def mark_restart(self, at: int, kind: str = "restart") -> None:
        """Mark a restart before candidate ``at`` (shown on the stage's fitness plot)."""
        self._top().restarts.append((at, kind))

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Buffer metrics for the open run at ``step`` (sent with ``log_batch``)."""
        self._top().writer.add_metrics(metrics, step)

    def flush(self, strict: bool = True) -> None:
        """Write the open run's buffered candidates and metrics now (retried).

        ``strict``: raise ``TrackingUnavailable`` if they still cannot be written (they stay
        buffered either way).
        """
        if self._stack:
            self._stack[-1].writer.flush(strict)

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
        steps = lineage(self._first_by_hash.values() if records is None else records, winner_hash)
        self.log_text(lineage_markdown(winner_hash, steps), "winner/lineage.md")
        self.log_figure(plots.lineage(steps), "plots/lineage.png")
        return steps

    def register(self, program: Program, **kwargs):
        """Log ``program`` as an MLflow model in the open run and register it.

        Keyword arguments go to :func:`pipeline.registry.log_program_model`; returns the
        ``ModelVersion``.
        """
        from pipeline.registry import log_program_model

        return log_program_model(program, run_id=self.run_id, client=self.client, **kwargs)
