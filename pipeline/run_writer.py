"""Buffered, retried writes of one MLflow run: its candidates table and its metrics.

Rows are appended to the run's ``candidates.json`` table in batches whose size grows with the
table (so total writing stays linear in the number of rows); metrics go out with
``log_batch``. A failed write is retried ``retries`` times with doubling waits; if it still
fails the rows or metrics stay buffered (nothing is lost) and go out with the next flush.
The table is the source of truth for what was written: before a retry the writer counts its
rows, so a failed append that did land is not written twice.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from mlflow import MlflowClient
from mlflow.entities import Metric

from pipeline.tracking_server import TrackingUnavailable

__all__ = ["CANDIDATES_TABLE", "RunWriter", "table_rows"]

CANDIDATES_TABLE = "candidates.json"
_BATCH_METRICS = 1000  # log_batch's limit
_log = logging.getLogger(__name__)
T = TypeVar("T")


def table_rows(client: MlflowClient, run_id: str) -> int:
    """Rows in a run's candidates table; 0 if it has none."""
    if CANDIDATES_TABLE not in {f.path for f in client.list_artifacts(run_id)}:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, CANDIDATES_TABLE, tmp)
        with open(local, encoding="utf-8") as f:
            return len(json.load(f)["data"])


class RunWriter:
    """The write buffers of the run ``run_id``.

    Args:
        client: the MLflow client.
        tracking_uri: the client's tracking URI (for messages).
        run_id: the run written to.
        flush_rows: rows buffered before the table is appended to (the batch also grows to
            a quarter of the rows already written).
        retries: further attempts of a failed write.
        retry_backoff_s: the wait before the first retry; it doubles with each retry.
    """

    def __init__(self, client: MlflowClient, tracking_uri: str, run_id: str, *,
                 flush_rows: int, retries: int, retry_backoff_s: float):
        self.client, self.tracking_uri, self.run_id = client, tracking_uri, run_id
        self.flush_rows, self.retries, self.retry_backoff_s = flush_rows, retries, retry_backoff_s
        self.rows: list[dict] = []
        self.rows_written = 0
        self.metrics: list[Metric] = []

    def _retrying(self, what: str, fn: Callable[[], T],
                  before_retry: Callable[[], None] | None = None) -> T:
        """``fn()``, retried ``self.retries`` times with doubling waits; the last error is
        re-raised as :class:`TrackingUnavailable` (saying ``what`` failed, and where)."""
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
        raise AssertionError("unreachable")

    def count_table(self) -> int:
        """Rows already in the run's table (retried)."""
        return self._retrying("count the candidates table",
                              lambda: table_rows(self.client, self.run_id))

    def add_rows(self, rows: list[dict]) -> None:
        """Buffer table rows; append them when enough are buffered (kept on failure)."""
        self.rows.extend(rows)
        if len(self.rows) >= max(self.flush_rows, self.rows_written // 4):
            self._flush_rows()

    def add_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer metrics at ``step``; send them when enough are buffered (kept on failure)."""
        ms = int(time.time() * 1000)
        self.metrics.extend(Metric(k, float(v), ms, int(step)) for k, v in metrics.items())
        if len(self.metrics) >= _BATCH_METRICS:
            self._flush_metrics()

    def flush(self, strict: bool = True) -> None:
        """Write the buffered rows and metrics now; ``strict``: raise
        :class:`TrackingUnavailable` if they still cannot be written (they stay buffered)."""
        self._flush_rows(strict)
        self._flush_metrics(strict)

    def _flush_metrics(self, strict: bool = False) -> None:
        while self.metrics:
            chunk = self.metrics[:_BATCH_METRICS]
            try:
                self._retrying("log metrics",
                               lambda c=chunk: self.client.log_batch(self.run_id, metrics=c))
            except TrackingUnavailable as err:
                if strict:
                    raise
                _log.warning("%s; %d metric values kept for the next flush", err,
                             len(self.metrics))
                return
            del self.metrics[: len(chunk)]

    def _flush_rows(self, strict: bool = False) -> None:
        if not self.rows:
            return
        import pandas as pd  # an MLflow dependency; imported lazily, it is slow to import

        def write() -> None:
            if self.rows:
                table = pd.DataFrame.from_records(self.rows, columns=list(self.rows[0]))
                self.client.log_table(self.run_id, table, CANDIDATES_TABLE)
                self.rows_written += len(self.rows)
                self.rows.clear()

        def resync() -> None:  # a failed append may have landed: count, drop what did
            landed = table_rows(self.client, self.run_id) - self.rows_written
            if landed > 0:
                del self.rows[:landed]
                self.rows_written += landed

        try:
            self._retrying("append to the candidates table", write, resync)
        except TrackingUnavailable as err:
            if strict:
                raise
            _log.warning("%s; %d candidates kept for the next flush (they are in the search's "
                         "checkpoint too)", err, len(self.rows))
