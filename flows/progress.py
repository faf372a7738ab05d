"""Search progress for people: a one-line bar on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Reports candidates done / budget, best fitness, cache hit rate and candidates/s."""

    def __init__(self, total: int, stream: TextIO | None = None, every_s: float = 5.0):
        self.total = max(1, total)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self._last = 0.0
        self._start = time.perf_counter()

    def update(self, done: int, best: float, hit_rate: float, force: bool = False) -> None:
        now = time.perf_counter()
        rate = done / max(now - self._start, 1e-9)
        best_s = f"{best:.4g}" if math.isfinite(best) else "-inf"
        if self.tty:
            width = 30
            filled = min(width, int(width * done / self.total))
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(
                f"\r[{bar}] {done}/{self.total} best {best_s} hit {hit_rate:.0%} "
                f"{rate:.1f} cand/s"
            )
            if done >= self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif force or now - self._last >= self.every_s or done >= self.total:
            self.stream.write(
                f"evolve: {done}/{self.total} candidates; best fitness {best_s}; "
                f"cache hit rate {hit_rate:.1%}; {rate:.1f} candidates/s\n"
            )
            self.stream.flush()
            self._last = now
