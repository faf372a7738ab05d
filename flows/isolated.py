"""Evaluation in a child process with a deadline: past it the child is killed, so the work
really stops (a thread cannot be stopped, and TF does not look at deadlines mid-graph).

Workers are spawned (never forked: TensorFlow is imported here), import TensorFlow once,
say they are ready, then evaluate one batch at a time; an idle worker is reused, a late one
is killed and replaced by a fresh one on the next call. Only our own values cross the pipe
(program texts, the proxy's and hurdles' settings, fitnesses). Starting a worker (seconds) does
not count against the deadline; tracing the evaluator in a fresh worker does.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection

from pipeline.evaluator import Hurdles
from pipeline.proxy import Proxy

__all__ = ["EvaluationTimeout", "evaluate_with_deadline"]

STARTUP_S = 300.0  # how long a fresh worker may take to import TensorFlow
_idle: list[tuple[mp.Process, Connection]] = []
_lock = threading.Lock()


class EvaluationTimeout(Exception):
    """A batch ran past its time limit; its worker was killed."""


def _serve(conn: Connection) -> None:
    from flows.steps import evaluate_texts

    conn.send("ready")
    while True:
        try:
            texts, proxy, hurdles = conn.recv()
        except EOFError:  # the parent is gone
            return
        try:
            conn.send(("ok", evaluate_texts(texts, proxy, hurdles)))
        except Exception as err:  # noqa: BLE001 - reported to the parent, which raises
            conn.send(("error", f"{type(err).__name__}: {err}"))


def _worker() -> tuple[mp.Process, Connection]:
    with _lock:
        while _idle:
            proc, conn = _idle.pop()
            if proc.is_alive():
                return proc, conn
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=_serve, args=(child,), daemon=True,
                                           name="lionforge-eval")
    proc.start()
    child.close()
    if not parent.poll(STARTUP_S) or parent.recv() != "ready":
        _kill(proc, parent)
        raise RuntimeError("the evaluation worker did not start")
    return proc, parent


def _kill(proc: mp.Process, conn: Connection) -> None:
    proc.kill()
    proc.join()
    conn.close()


def evaluate_with_deadline(
    texts: Sequence[str], proxy: Proxy, hurdles: Hurdles, seconds: float
) -> list:
    """``flows.steps.evaluate_texts`` in a worker process, killed after ``seconds``.

    Raises :class:`EvaluationTimeout` when the batch is late.
    """
    proc, conn = _worker()
    try:
        conn.send((list(texts), proxy, hurdles))
        ready = conn.poll(seconds)
    except (OSError, EOFError):
        ready = False
    if not ready:
        _kill(proc, conn)
        raise EvaluationTimeout(f"{len(texts)} candidates ran past {seconds} s")
    try:
        status, value = conn.recv()
    except (OSError, EOFError) as err:  # the worker died (e.g. out of memory)
        _kill(proc, conn)
        raise RuntimeError("the evaluation worker died") from err
    with _lock:
        _idle.append((proc, conn))
    if status != "ok":
        raise RuntimeError(f"evaluation failed in the worker: {value}")
    return value
