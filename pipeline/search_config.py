"""The search's configuration: how children are made, when to restart, what to cache, and
when to stop.

:class:`EvolutionConfig` holds the knobs of ``pipeline.evolve.Search`` (defaults are the Lion
paper's where it gives them) with a JSON round trip for checkpoints; :class:`Budget` says
when ``Search.run`` stops.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, replace

from pipeline.cache import DEFAULT_PROBE, Probe
from pipeline.mutate import MutationConfig

__all__ = ["Budget", "EvolutionConfig", "RestartFrom", "Strategy", "with_mutation"]


class Strategy(enum.Enum):
    """How children are made: mutants of tournament winners, or fresh random programs."""

    EVOLUTION = "evolution"
    RANDOM = "random"


class RestartFrom(enum.Enum):
    """What a restart fills the population with."""

    SEED = "seed"  # exploration
    BEST = "best"  # exploitation
    ALTERNATE = "alternate"  # seed, best, seed, ...


@dataclass(frozen=True)
class EvolutionConfig:
    """The search's knobs; defaults are the Lion paper's where it gives them.

    Attributes:
        population_size: P (paper: 1000).
        tournament_size: T (paper: 2).
        batch_size: children proposed (and evaluated) together.
        restart_patience: restart after this many candidates without a strictly better best
            (``None``: never).
        restart_every: also restart every this many candidates (``None``: never).
        restart_from: what a restart fills the population with.
        structural_cache: use the structural (dataflow hash) cache.
        fec_cache_size: entries of the functional-equivalence LRU cache (0: no FEC).
        mutation: the mutation config.
        strategy: evolution, or the random-search baseline.
        random_length: (min, max) statements of random programs; ``None``: seed length +- 3.
        probe: the fixed inputs of FEC fingerprints.
    """

    population_size: int = 1000
    tournament_size: int = 2
    batch_size: int = 64
    restart_patience: int | None = None
    restart_every: int | None = None
    restart_from: RestartFrom = RestartFrom.ALTERNATE
    structural_cache: bool = True
    fec_cache_size: int = 100_000
    mutation: MutationConfig = MutationConfig()
    strategy: Strategy = Strategy.EVOLUTION
    random_length: tuple[int, int] | None = None
    probe: Probe = DEFAULT_PROBE

    def __post_init__(self) -> None:
        for name in ("population_size", "tournament_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.tournament_size > self.population_size:
            raise ValueError(
                f"tournament_size must be <= population_size ({self.population_size}), "
                f"got {self.tournament_size}"
            )
        for name in ("restart_patience", "restart_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be None or >= 1, got {value}")
        if self.fec_cache_size < 0:
            raise ValueError(f"fec_cache_size must be >= 0, got {self.fec_cache_size}")
        rl = self.random_length
        if rl is not None and not 1 <= rl[0] <= rl[1]:
            raise ValueError(f"random_length must be (min, max) with 1 <= min <= max, got {rl}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["restart_from"] = self.restart_from.value
        d["strategy"] = self.strategy.value
        d["probe"] = {k: v for k, v in d["probe"].items() if not k.startswith("_")}
        return d

    @classmethod
    def from_json(cls, d: dict) -> EvolutionConfig:
        d = dict(d)
        m = dict(d["mutation"])
        m["ops"] = tuple(m["ops"])
        p = dict(d["probe"])
        p["shapes"] = tuple(tuple(s) for s in p["shapes"])
        d["mutation"] = MutationConfig(**m)
        d["probe"] = Probe(**p)
        d["restart_from"] = RestartFrom(d["restart_from"])
        d["strategy"] = Strategy(d["strategy"])
        if d["random_length"] is not None:
            d["random_length"] = tuple(d["random_length"])
        return cls(**d)


@dataclass(frozen=True)
class Budget:
    """When to stop: after ``candidates`` candidates and/or ``seconds`` of wall time."""

    candidates: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.candidates is None and self.seconds is None:
            raise ValueError("a Budget needs candidates or seconds (or both)")


def with_mutation(config: EvolutionConfig, **changes) -> EvolutionConfig:
    """``config`` with some fields of its mutation config replaced."""
    return replace(config, mutation=replace(config.mutation, **changes))
