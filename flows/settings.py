"""What an experiment sets: one frozen dataclass per step, defaults from the papers.

gin binds these (``flows.config`` registers them); the flows read them. A gin file such as
``gin/quickstart.gin`` is a few bindings on top of these defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum

from pipeline.evaluator import Hurdles
from pipeline.funnel import Stage
from pipeline.program import Program
from pipeline.proxy import Proxy
from pipeline.search_config import EvolutionConfig

__all__ = [
    "as_params",
    "BenchmarkSettings",
    "EvolveSettings",
    "Experiment",
    "FunnelSettings",
    "RegisterSettings",
    "SimplifySettings",
    "TrackingSettings",
]


@dataclass(frozen=True)
class Experiment:
    """The experiment: its MLflow name (one experiment per config) and the master seed."""

    name: str = "lionforge"
    seed: int = 0


@dataclass(frozen=True)
class EvolveSettings:
    """The search on the proxy task.

    Attributes:
        proxy: the proxy fitness (``pipeline.proxy.Proxy``): tasks, scale, seed, the
            learning-rate multipliers each candidate is trained at, how tasks combine.
        seed_program: the warm start, a name in ``pipeline.seeds.SEEDS``; it is also what
            the proxy is calibrated on (its seed-to-seed noise).
        budget: candidates to propose (the CLI's ``--budget`` overrides).
        max_seconds: also stop after this much wall time (None: no limit).
        evolution: population, tournament, batch size, restarts, caches, mutation.
        hurdles: early stopping of hopeless candidates inside a batch.
        eval_chunk: programs per evaluation task run (a Prefect task; retried on failure).
        eval_timeout_s: seconds one evaluation chunk may take (None: no limit). With a limit
            a chunk trains in a worker process that is killed when late; its candidates
            then score worst, with the rejection "timeout", and the search goes on.
    """

    proxy: Proxy = field(default_factory=Proxy)
    seed_program: str = "adamw"
    budget: int = 1000
    max_seconds: float | None = None
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    hurdles: Hurdles = field(default_factory=Hurdles)
    eval_chunk: int = 512
    eval_timeout_s: float | None = None


@dataclass(frozen=True)
class FunnelSettings:
    """Top-k distinct proxy winners through larger stages against the AdamW baseline."""

    top_k: int = 10
    stages: tuple[Stage, ...] = (Stage("B", "digits_mlp", 2.0), Stage("C", "digits_mlp", 10.0))
    seeds: tuple[int, ...] = (0, 1, 2)
    lr_multipliers: tuple[float, ...] = (1 / 3, 1.0, 3.0)
    baseline: str = "adamw"


@dataclass(frozen=True)
class SimplifySettings:
    """Simplification of the winner.

    Attributes:
        noise_fraction: the proxy fitness a low-effect removal may cost, as a fraction of the
            warm start's seed-to-seed standard deviation on the proxy (its calibration), never
            an absolute number: a 0.02 tolerance meant nothing on a loss of 0.03.
        evolve_steps: random multi-statement deletions tried per round.

    The simplified rule is then re-scored on the funnel's last stage with the funnel's seeds;
    if it is worse than the rule the funnel validated beyond the seed spread there, only the
    exact passes (dead code, rewrites checked equal) are kept.
    """

    noise_fraction: float = 0.5
    evolve_steps: int = 20

    def __post_init__(self) -> None:
        if not self.noise_fraction >= 0:
            raise ValueError("SimplifySettings.noise_fraction must be >= 0. "
                             f"Received: {self.noise_fraction}")


@dataclass(frozen=True)
class BenchmarkSettings:
    """The final comparison: winner vs Keras' AdamW and Lion, same grid, seeds and steps.

    Each contender's grid is centred on the task's own ``learning_rate`` (AdamW's tuned rate
    there) times a scale: 1 for AdamW, ``lion_lr_scale`` for Lion (the paper: 3-10x
    smaller), the funnel's winning multiplier for the discovered rule. A grid whose best
    rate is at an edge grows (``pipeline.benchmark.run_benchmark``).
    """

    tasks: tuple[str, ...] = ("synth_mlp", "char_lm")
    scale: float = 1.0
    seeds: tuple[int, ...] = (0, 1)
    lr_multipliers: tuple[float, ...] = (0.1, 1 / 3, 1.0, 3.0, 10.0)
    adamw_lr_scale: float = 1.0
    lion_lr_scale: float = 0.2

    def __post_init__(self) -> None:
        for name in ("adamw_lr_scale", "lion_lr_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"BenchmarkSettings.{name} must be > 0. "
                                 f"Received: {getattr(self, name)}")


@dataclass(frozen=True)
class RegisterSettings:
    """Where the winner goes in the MLflow model registry."""

    model_name: str = "lionforge-discovered"
    alias: str = "champion"


@dataclass(frozen=True)
class TrackingSettings:
    """How the MLflow tracker buffers and retries (``pipeline.tracking.Tracker``'s knobs).

    Attributes:
        flush_rows: candidates buffered before the run's candidates table is appended to.
        metrics_every: candidates between two metric steps.
        retries: further attempts of a failed mid-run write, with doubling waits.
        retry_backoff_s: the wait before the first retry.
        connect_timeout_s: how long the start-up probe of an ``http(s)`` server waits.
    """

    flush_rows: int = 2000
    metrics_every: int = 100
    retries: int = 3
    retry_backoff_s: float = 1.0
    connect_timeout_s: float = 5.0


def as_params(*objs) -> dict[str, object]:
    """Flat params for MLflow from settings dataclasses, one per setting and uncut: a nested
    settings object's fields under its gin name (``Proxy.tasks``), a tuple of them under each
    one's name or index (``FunnelSettings.stages.B.task``)."""
    out: dict[str, object] = {}

    def add(prefix: str, obj) -> None:
        for f in fields(obj):
            if not f.init:  # derived state (a cache), not a setting
                continue
            v = getattr(obj, f.name)
            if isinstance(v, Program):
                out[f"{prefix}.{f.name}"] = v.to_text()
            elif is_dataclass(v):
                add(type(v).__name__, v)
            elif isinstance(v, tuple | list) and v and all(is_dataclass(x) for x in v):
                for i, x in enumerate(v):
                    add(f"{prefix}.{f.name}.{getattr(x, 'name', i)}", x)
            elif isinstance(v, Enum):
                out[f"{prefix}.{f.name}"] = v.name
            elif isinstance(v, int | float | str | bool) or v is None:
                out[f"{prefix}.{f.name}"] = v
            else:
                out[f"{prefix}.{f.name}"] = json.dumps(v, default=str)

    for obj in objs:
        add(type(obj).__name__, obj)
    return out
