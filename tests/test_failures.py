"""Failures around a search: an unreachable or failing MLflow server, a batch past its time
limit. Real servers and real processes, no mocks."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows import rundir, steps
from flows.settings import EvolveSettings, Experiment
from pipeline import seeds
from pipeline.evolve import evaluate_each
from pipeline.numpy_tasks import Quadratic
from pipeline.proxy import Proxy
from pipeline.run_writer import CANDIDATES_TABLE
from pipeline.search_config import EvolutionConfig
from pipeline.tracking import Tracker
from pipeline.tracking_server import TrackingUnavailable, check_reachable

ROOT = Path(__file__).resolve().parent.parent


# ---- unreachable at start ------------------------------------------------------------------


def test_an_unreachable_tracking_server_is_a_clear_error_in_seconds_not_a_hang(tmp_path,
                                                                              free_port):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)  # MLflow's default: minutes of retries
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "evolve", "--gin_file", "gin/smoke.gin",
         "--run_dir", str(tmp_path / "run")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    elapsed = time.monotonic() - t0
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"MLflow tracking server {uri} is unreachable" in out.stderr
    assert "Traceback" not in out.stderr
    assert elapsed < 15, elapsed
    assert not (tmp_path / "run").exists()  # nothing ran


@pytest.mark.parametrize("uri", ["http://127.0.0.1:abc", "http://[::1"])
def test_a_malformed_tracking_uri_is_a_clear_error(uri):
    with pytest.raises(TrackingUnavailable, match="not a valid URL"):
        check_reachable(uri, 1.0)


def test_a_server_that_accepts_but_never_answers_times_out_at_the_probe():
    with socket.socket() as silent:  # listens, never accepts or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.monotonic()
        with pytest.raises(TrackingUnavailable, match="unreachable"):
            Tracker("x", uri, connect_timeout_s=1.0)
        assert time.monotonic() - t0 < 5


# ---- failing mid-run -------------------------------------------------------------------------


class _Server:
    """``mlflow server`` on 127.0.0.1 with a sqlite store in ``root`` (``store`` copied there
    first, when given: its tables already created)."""

    def __init__(self, root: Path, port: int, store: Path | None = None):
        self.root, self.port = root, port
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        if store is not None:
            shutil.copy(store, root / "mlflow.db")

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
               "--artifacts-destination", str(self.root / "artifacts")]
        log = open(self.root / "server.log", "a")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=1):
                    return
            except OSError:
                assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


class _Gate:
    """The only way to the server: a port of its own that forwards every connection to
    ``target_port``. ``close()`` is an outage as a client sees one when the server dies: new
    connections are refused and open ones cut. ``open()`` brings it back on the same port.
    (A real outage without restarting the server, which costs seconds of CPU each time.)"""

    def __init__(self, target_port: int, port: int):
        self.target, self.port = ("127.0.0.1", target_port), port
        self.uri = f"http://127.0.0.1:{self.port}"
        self.listener: socket.socket | None = None
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
            self.listener.close()
            self.listener = None
        with self.lock:
            conns, self.conns = self.conns, set()
        for conn in conns:
            _cut(conn)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            with self.lock:
                if self.listener is not listener:  # closed meanwhile
                    _cut(client)
                    _cut(upstream)
                    return
                self.conns |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        with self.lock:
            self.conns -= {src, dst}
        _cut(src)
        _cut(dst)


def _cut(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected
    conn.close()


@pytest.fixture
def server(tmp_path, empty_store, free_port):
    s = _Server(tmp_path, free_port(), empty_store)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def gate(server, free_port):
    g = _Gate(server.port, free_port())
    g.open()
    yield g
    g.close()


def _indices(uri: str, run_id: str, tmp: Path) -> list[int]:
    client = MlflowClient(uri)
    local = client.download_artifacts(run_id, CANDIDATES_TABLE, str(tmp))
    table = json.loads(Path(local).read_text())
    return [row[table["columns"].index("index")] for row in table["data"]]


@pytest.mark.slow
def test_a_tracking_outage_mid_run_loses_no_candidate_and_logs_none_twice(
    gate, tmp_path, caplog
):
    """The server goes away mid-search: the search goes on; when it is back the next flush
    logs what was buffered. It goes away again and stays away: the run ends in an error but
    the checkpoint holds everything, and the re-run (same run dir) logs exactly what is
    missing. The outages are the gate's (:class:`_Gate`): the server itself runs throughout.
    """
    cfg = EvolveSettings(budget=120, evolution=EvolutionConfig(
        population_size=16, tournament_size=4, batch_size=8))
    run_dir = tmp_path / "run"
    calls = 0
    quadratic = evaluate_each(Quadratic(steps=40))

    def evaluate(programs):
        nonlocal calls
        calls += 1
        if calls in (3, 12):
            gate.close()  # the outages
        if calls == 7:
            gate.open()  # back in between
        return quadratic(programs)

    def tracker() -> Tracker:
        return Tracker("failures", gate.uri, flush_rows=8, retries=1, retry_backoff_s=0.1)

    first = tracker()
    with pytest.raises(Exception):  # noqa: B017 - the final flush and closing the run fail
        with first.run("evolve") as run_id:
            rundir.remember_run(run_dir, first, "evolve", run_id)
            steps.evolve_step(cfg, Experiment(seed=0), run_dir, evaluate, tracker=first)
    assert "kept for the next flush" in caplog.text
    checkpoint = json.loads((run_dir / rundir.SEARCH_FILE).read_text())
    assert checkpoint["records"] == 120  # the search went on through both outages

    gate.open()
    evaluated = calls
    logged = _indices(gate.uri, run_id, tmp_path / "a")
    assert logged == list(range(len(logged))) and 60 < len(logged) < 120  # flushed in between

    again = tracker()
    with again.run("evolve", run_id=rundir.remembered_run(run_dir, again, "evolve")) as rid:
        assert rid == run_id
        search = steps.evolve_step(cfg, Experiment(seed=0), run_dir, evaluate, tracker=again)
    assert calls == evaluated and len(search.records) == 120  # nothing evaluated again
    assert _indices(gate.uri, run_id, tmp_path / "b") == list(range(120))


# ---- a batch past its time limit -------------------------------------------------------------


def _workers() -> list:
    return [p for p in multiprocessing.active_children() if p.name == "lionforge-eval"]


@pytest.mark.slow
def test_a_batch_past_its_time_limit_is_stopped_scored_worst_and_the_search_goes_on(tmp_path):
    cfg = EvolveSettings(budget=33, eval_timeout_s=0.05, evolution=EvolutionConfig(
        population_size=8, tournament_size=2, batch_size=16))
    cache_dir = tmp_path / "run" / "batches"

    def evaluate(programs):
        return steps.evaluate_texts([p.to_text() for p in programs], cfg.proxy,
                                     cfg.hurdles, str(cache_dir), cfg.eval_timeout_s)

    search = steps.evolve_step(cfg, Experiment(seed=0), tmp_path / "run", evaluate)
    assert len(search.records) == 33  # the search went on
    evaluated = [r for r in search.records if not r.cache_hit and r.structural_hash]
    assert evaluated and all(r.rejection == "timeout" and r.fitness == -math.inf
                             for r in evaluated)
    assert search.stats.rejections["timeout"] >= len(evaluated)
    assert not _workers()  # every late worker was killed: the training really stopped
    # The verdict is persisted with the batch, so a resumed search sees the same one.
    (batch,) = [json.loads(p.read_text()) for p in sorted(cache_dir.iterdir())][:1]
    assert set(batch["rejection"]) == {"timeout"}
    assert all(f is None for f in batch["fitness"])


@pytest.mark.slow
def test_within_its_time_limit_a_batch_scores_as_it_does_in_process():
    settings = EvolveSettings(proxy=Proxy(scale=0.25))
    texts = [seeds.adamw().to_text(), seeds.lion().to_text(), "x = g * 1e30\nupdate = x * lr\n"]
    args = (texts, settings.proxy, settings.hurdles)
    in_process = steps.evaluate_texts(*args)
    in_worker = steps.evaluate_texts(*args, timeout_s=120.0)
    assert in_worker == in_process and in_process[2].fitness == -math.inf
    assert all(len(r.lr_multipliers) == 1 for r in in_process)  # which multiplier won
    assert len(_workers()) == 1  # an idle worker, kept for the next call
