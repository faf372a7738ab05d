"""Progress for people: one bar per step on a terminal, plain log lines elsewhere.

Each long step (evolve, funnel, benchmark) reports ``done / total`` of its own unit, its
rate since it started and an ETA. On a terminal that is one bar rewritten in place; off a
terminal (a log file, CI) a line every ``every_s`` seconds and at the end.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO, TypeVar

__all__ = ["Progress", "counted", "duration"]

F = TypeVar("F", bound=Callable)


def duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h07m``: how long, to a useful precision."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Reports ``done / total`` of ``unit`` for the step ``label``, the rate and an ETA.

    The rate counts only what this process did (a resumed search starts at its checkpoint),
    so the ETA is what is left at the current speed.
    """

    def __init__(self, total: int, stream: TextIO | None = None, every_s: float = 5.0,
                 label: str = "evolve", unit: str = "candidates"):
        self.total = max(1, total)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self.label, self.unit = label, unit
        self._last = 0.0
        self._start = time.perf_counter()
        self._first: int | None = None  # `done` at the first report
        self._done = 0

    def update(self, done: int, best: float, hit_rate: float, force: bool = False) -> None:
        """The search's report: candidates done, best fitness and cache hit rate."""
        best_s = f"{best:.4g}" if math.isfinite(best) else "-inf"
        self.step(done, f"best {best_s} hit {hit_rate:.0%}",
                  f"best fitness {best_s}; cache hit rate {hit_rate:.1%}", force)

    def step(self, done: int, bar_detail: str = "", line_detail: str = "",
             force: bool = False) -> None:
        """Report ``done``; the details go after the count on the bar or the line."""
        now = time.perf_counter()
        if self._first is None:
            self._first = done
        self._done = done
        total = max(self.total, done)  # a grid that grew past its first size
        rate = (done - self._first) / max(now - self._start, 1e-9)
        eta = duration((total - done) / rate) if rate > 0 else "?"
        if self.tty:
            width = 30
            filled = min(width, int(width * done / total))
            bar = "#" * filled + "-" * (width - filled)
            detail = f" {bar_detail}" if bar_detail else ""
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total}{detail} "
                              f"{rate:.1f} {self.unit}/s eta {eta}   ")
            if done >= total:
                self.stream.write("\n")
            self.stream.flush()
        elif force or now - self._last >= self.every_s or done >= total:
            detail = f"; {line_detail}" if line_detail else ""
            self.stream.write(f"{self.label}: {done}/{total} {self.unit}{detail}; "
                              f"{rate:.1f} {self.unit}/s; eta {eta}\n")
            self.stream.flush()
            self._last = now

    def advance(self, n: int = 1) -> None:
        """``n`` more done."""
        self.step(self._done + n)

    def finish(self) -> None:
        """The step is done (a funnel gate may leave planned work undone): report 100%."""
        if self._done < self.total:
            self.step(self.total, force=True)


def counted(fn: F, progress: Progress | None) -> F:
    """``fn``, advancing ``progress`` by one after each call (``fn`` itself when None)."""
    if progress is None:
        return fn

    def run(*args, **kwargs):
        out = fn(*args, **kwargs)
        progress.advance()
        return out

    return run  # type: ignore[return-value]
