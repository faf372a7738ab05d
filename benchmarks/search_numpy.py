"""Search throughput and cache effectiveness on a NumPy fitness (no TensorFlow training).

Runs regularized evolution from the paper's AdamW seed on ``numpy_tasks.Quadratic`` for
10,000 candidates (the paper's P=1000, T=2 by default), then the same search with both
caches off, side by side, and prints hit rates, evaluations saved and candidates/s.

    PYTHONPATH=. python benchmarks/search_numpy.py [--candidates 10000] [--population 1000]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from pipeline import seeds
from pipeline.evolve import Search, evaluate_each
from pipeline.numpy_tasks import Quadratic
from pipeline.search_config import EvolutionConfig


def run(config: EvolutionConfig, candidates: int, rng_seed: int) -> tuple[Search, float]:
    search = Search(config, seeds.paper_adamw(), rng_seed=rng_seed)
    t0 = time.perf_counter()
    search.run(evaluate_each(Quadratic()), candidates)
    return search, time.perf_counter() - t0


def report(name: str, search: Search, wall: float) -> None:
    s = search.stats
    draws = s.candidates + sum(s.redraws.values())
    print(f"[{name}]")
    print(f"  candidates            {s.candidates}")
    print(f"  evaluations           {s.evaluations}")
    print(f"  structural hit rate   {s.structural_hit_rate:.1%}")
    print(f"  FEC hit rate          {s.fec_hit_rate:.1%}")
    print(f"  total hit rate        {s.hit_rate:.1%}  (evaluations saved: {s.evaluations_saved})")
    print(f"  mutation draws        {draws}  (redrawn: {dict(sorted(s.redraws.items()))})")
    print(f"  draws not evaluated   {1 - s.evaluations / draws:.1%}  (redrawn, rejected or hit)")
    print(f"  rejected candidates   {s.rejected}  {dict(sorted(s.rejections.items()))}")
    print(f"  candidates/s          {s.candidates / wall:.0f}  (wall {wall:.1f} s)")
    print(f"  best fitness          {search.best.fitness:.3f}  "
          f"(seed {search.seed_individual.fitness:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=10_000)
    ap.add_argument("--population", type=int, default=1000)
    ap.add_argument("--tournament", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-compare", action="store_true", help="skip the cache-off run")
    args = ap.parse_args()
    config = EvolutionConfig(population_size=args.population, tournament_size=args.tournament,
                             batch_size=args.batch)
    cached, t_cached = run(config, args.candidates, args.seed)
    report(f"caches on: P={args.population} T={args.tournament} batch={args.batch}",
           cached, t_cached)
    if args.no_compare:
        return
    plain, t_plain = run(replace(config, structural_cache=False, fec_cache_size=0),
                         args.candidates, args.seed)
    report("caches off (same search, every candidate evaluated)", plain, t_plain)
    print(f"speed-up from caches: {t_plain / t_cached:.2f}x candidates/s "
          f"({plain.stats.evaluations / max(1, cached.stats.evaluations):.2f}x fewer evaluations)")


if __name__ == "__main__":
    main()
