"""What one per-batch checkpoint costs as a search grows.

Runs one search (``EvolutionConfig`` defaults but batch 64, population 1000; fitness is a cheap
hash of the program so proposing dominates) and, at each of several sizes, times
``Search.save`` right after a batch: the cost a long run pays every batch. Also prints the
size of the checkpoint file and of its records file, and the ratio of the last to the first
save time (flat means the per-batch cost does not grow with the history).

    PYTHONPATH=. python benchmarks/checkpoint_io.py [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from pipeline.evolve import Search
from pipeline.search_config import EvolutionConfig


def cheap(programs):
    """A deterministic fake fitness in [0, 1) from the program text."""
    return [int(hashlib.sha256(p.to_text().encode()).hexdigest()[:8], 16) / 2**32
            for p in programs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "search.json"
        search = Search(EvolutionConfig(batch_size=64), rng_seed=0)
        first = None
        for size in args.sizes:
            search.run(cheap, size)
            search.save(path)  # brings the files up to date (a first save writes everything)
            times = []
            for _ in range(args.repeats):
                search.step(cheap)  # one more batch, then the checkpoint a batch costs
                t0 = time.perf_counter()
                search.save(path)
                times.append(time.perf_counter() - t0)
            best = min(times)
            first = first or best
            records = sorted(Path(tmp).glob("*.jsonl"))
            rec_size = records[0].stat().st_size if records else 0
            print(f"{len(search.records):>7} records: save {best * 1e3:8.2f} ms  "
                  f"checkpoint {path.stat().st_size / 1e3:9.1f} kB  "
                  f"records file {rec_size / 1e3:9.1f} kB  "
                  f"(x{best / first:.2f} of the first size)")


if __name__ == "__main__":
    main()
