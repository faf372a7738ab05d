"""Fitness values: the one worst value, and how a fitness is written to and read from JSON.

Fitness is *higher is better* everywhere in lionforge. A candidate that was rejected,
diverged (NaN/inf loss or parameters) or failed scores :data:`WORST`, which is ``-inf`` so
that it sorts below every real score and no mean that includes it looks better.

JSON has no infinities or NaN, so the files a search writes (checkpoints, the records file,
the candidates table, evaluated batches, summaries) store a worst fitness as ``null``;
:func:`from_json` also reads the strings (``"-inf"``) that older checkpoints hold.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

__all__ = ["WORST", "finite_or_worst", "from_json", "mean_or_worst", "spread", "to_json"]

WORST = float("-inf")


def finite_or_worst(x: float) -> float:
    """``x`` if it is a finite number, else :data:`WORST`."""
    x = float(x)
    return x if math.isfinite(x) else WORST


def mean_or_worst(xs: Iterable[float]) -> float:
    """The mean of ``xs`` if every one is finite, else :data:`WORST` (one diverged seed
    makes the whole score the worst: a mean must not hide it)."""
    xs = list(xs)
    return statistics.fmean(xs) if all(map(math.isfinite, xs)) else WORST


def spread(xs: Iterable[float]) -> float:
    """The seed-to-seed spread of ``xs``: their population standard deviation if every one is
    finite, else 0.0 (their mean is then :data:`WORST`, beside which a spread means nothing)."""
    xs = list(xs)
    return statistics.pstdev(xs) if all(map(math.isfinite, xs)) else 0.0


def to_json(x: float) -> float | None:
    """A fitness as a JSON value: the number, or ``null`` for the worst (any non-finite)."""
    return x if math.isfinite(x) else None


def from_json(x: float | str | None) -> float:
    """The fitness :func:`to_json` wrote: ``null`` (or an older file's ``"-inf"``/``"nan"``)
    reads back as :data:`WORST`."""
    return WORST if x is None else finite_or_worst(float(x))
