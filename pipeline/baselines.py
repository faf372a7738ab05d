"""The two baselines both papers compare against, with the search's interface and budget.

* Random search: every candidate is a fresh random valid program of about the seed's length
  (no selection, no inheritance).
* Hyperparameter-only search: regularized evolution whose only mutation multiplies one
  constant of the program by ``2**a``, ``a ~ N(0, 1)``; the seed's structure never changes,
  so it tunes the seed's hyperparameters (betas, epsilon, weight decay, lr scale).

Both return a :class:`~pipeline.evolve.Search`: ``run(evaluate, budget)``, ``step``,
checkpoints, records and stats work the same as for evolution.
"""

from __future__ import annotations

import os
from dataclasses import replace

from pipeline.evolve import Search
from pipeline.program import Program
from pipeline.search_config import EvolutionConfig, Strategy, with_mutation

__all__ = [
    "hyperparameter_config",
    "hyperparameter_search",
    "random_search",
    "random_search_config",
]


def random_search_config(config: EvolutionConfig | None = None) -> EvolutionConfig:
    """``config`` turned into random search (its mutation config still sets ops, slots, ...)."""
    return replace(config or EvolutionConfig(), strategy=Strategy.RANDOM)


def hyperparameter_config(config: EvolutionConfig | None = None) -> EvolutionConfig:
    """``config`` with constant tuning as the only mutation."""
    tuning = with_mutation(config or EvolutionConfig(), insert=0.0, delete=0.0, change_arg=0.0,
                           replace=0.0, tune_constant=1.0)
    return replace(tuning, strategy=Strategy.EVOLUTION)


def random_search(
    config: EvolutionConfig | None = None,
    seed: Program | None = None,
    *,
    rng_seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
) -> Search:
    """A random-search driver; ``seed`` is evaluated first and sets the programs' length."""
    return Search(random_search_config(config), seed, rng_seed=rng_seed, checkpoint=checkpoint)


def hyperparameter_search(
    config: EvolutionConfig | None = None,
    seed: Program | None = None,
    *,
    rng_seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
) -> Search:
    """A driver that tunes only the constants of ``seed`` (default ``seeds.paper_adamw()``)."""
    return Search(hyperparameter_config(config), seed, rng_seed=rng_seed, checkpoint=checkpoint)
