"""Fitness caches: structural (same dataflow) and functional equivalence (same behaviour).

* :class:`StructuralCache` maps ``Program.structural_hash()`` to the fingerprint and fitness
  seen for it: a program whose dataflow was seen is never fingerprinted or evaluated again.
* :class:`FECCache` (AutoML-Zero's functional equivalence checking) maps a *fingerprint* of
  the program's behaviour to a fitness, least-recently-used first out. :func:`fingerprint`
  runs the NumPy executor for a few steps on a fixed probe (fixed random ``w`` and ``g``
  sequences in a few shapes, a fixed ``lr``, ``t = 1, 2, ...``) and hashes the updates,
  rounded to a few significant bits, so ``g * lr`` and ``lr * g``, dead code, and most
  algebraically equal rewrites share one fingerprint.

Both caches are plain values with explicit ``get``/``put`` and JSON round trips; neither
writes anywhere on its own.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from pipeline.execute import numpy_step
from pipeline.program import Program

__all__ = ["Probe", "fingerprint", "StructuralCache", "FECCache", "DEFAULT_PROBE"]


@dataclass(frozen=True)
class Probe:
    """The fixed inputs a fingerprint runs a program on.

    Attributes:
        shapes: the weight shapes; scalar-vs-tensor and reduction behaviour show up here.
        steps: steps per shape (state carries over between them).
        lr: the learning rate input.
        seed: seeds the fixed ``w`` and ``g`` sequences.
        bits: significant bits kept of each output (12 bits ~ 3.6 decimal digits).
    """

    shapes: tuple[tuple[int, ...], ...] = ((7,), (3, 4), (2, 1, 3))
    steps: int = 4
    lr: float = 0.01
    seed: int = 0
    bits: int = 12
    _data: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def sequences(self) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """Per shape, ``steps`` pairs ``(w, g)`` of float32 arrays (computed once)."""
        if "seq" not in self._data:
            rng = np.random.default_rng(self.seed)
            seq = []
            for shape in self.shapes:
                w = rng.normal(size=shape).astype(np.float32)
                pairs = []
                for _ in range(self.steps):
                    g = rng.normal(size=shape).astype(np.float32)
                    pairs.append((w.copy(), g))
                    w = (w - 0.1 * g).astype(np.float32)
                seq.append(pairs)
            self._data["seq"] = seq
        return self._data["seq"]


DEFAULT_PROBE = Probe()


def _round_bits(x: np.ndarray, bits: int) -> np.ndarray:
    """Integers that identify ``x`` rounded to ``bits`` significant bits (non-finite coded)."""
    x = np.asarray(x, np.float64).ravel()
    finite = np.isfinite(x)
    mant, expo = np.frexp(np.where(finite, x, 0.0))
    q = np.round(mant * (1 << bits)).astype(np.int64)
    # A mantissa that rounds up to 2**bits is the next power of two.
    carry = np.abs(q) == (1 << bits)
    q = np.where(carry, q // 2, q)
    expo = np.where(carry, expo + 1, expo).astype(np.int64)
    expo = np.where(q == 0, 0, expo)
    code = np.where(np.isnan(x), 1, np.where(np.isposinf(x), 2, np.where(np.isneginf(x), 3, 0)))
    return np.stack([q, expo, code.astype(np.int64)])


def fingerprint(program: Program, probe: Probe = DEFAULT_PROBE) -> str:
    """A hex digest of the program's updates on ``probe``, rounded to ``probe.bits`` bits."""
    h = hashlib.sha256()
    for pairs in probe.sequences():
        state: dict = {}
        for t, (w, g) in enumerate(pairs, start=1):
            update, state = numpy_step(program, w, g, state, probe.lr, t)
            h.update(_round_bits(update, probe.bits).tobytes())
    return h.hexdigest()[:32]


@dataclass
class StructuralCache:
    """Structural hash -> ``(fingerprint, fitness)``; unbounded. Counts lookups and hits."""

    entries: dict[str, tuple[str, float]] = field(default_factory=dict)
    lookups: int = 0
    hits: int = 0

    def get(self, key: str) -> tuple[str, float] | None:
        self.lookups += 1
        found = self.entries.get(key)
        if found is not None:
            self.hits += 1
        return found

    def put(self, key: str, fp: str, fitness: float) -> None:
        self.entries[key] = (fp, float(fitness))


@dataclass
class FECCache:
    """Fingerprint -> fitness, least recently used evicted beyond ``max_size`` entries."""

    max_size: int = 100_000
    entries: OrderedDict[str, float] = field(default_factory=OrderedDict)
    lookups: int = 0
    hits: int = 0

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {self.max_size}")

    def get(self, fp: str) -> float | None:
        self.lookups += 1
        found = self.entries.get(fp)
        if found is not None:
            self.hits += 1
            self.entries.move_to_end(fp)
        return found

    def put(self, fp: str, fitness: float) -> None:
        self.entries[fp] = float(fitness)
        self.entries.move_to_end(fp)
        while len(self.entries) > self.max_size:
            self.entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self.entries)
