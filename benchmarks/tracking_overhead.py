"""How much of a search's wall time MLflow tracking takes.

Runs the same simulated NumPy search twice in one process: N candidates (seed programs with
their literals perturbed, as mutations do) scored by ``Quadratic``, in batches; once without
tracking and once with a ``Tracker`` logging every candidate (the candidates table) and
per-batch metrics into a fresh sqlite store in a temp dir. Prints both wall times, the time
spent inside tracker calls, and the logging share of the tracked run's wall time.

    PYTHONPATH=. python benchmarks/tracking_overhead.py [--candidates 5000] [--batch 100]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.numpy_tasks import Quadratic
from pipeline.program import Program
from pipeline.records import CandidateRecord
from pipeline.seeds import SEEDS
from pipeline.statement import ProgramError, Statement
from pipeline.stats import SearchStats


def perturbed(seed: Program, rng: np.random.Generator) -> Program:
    """``seed`` with each literal times 2**a, a ~ N(0, 1) (the paper's constant mutation)."""
    statements = [
        Statement(s.target, s.op, tuple(
            a if isinstance(a, str) else float(a * 2.0 ** rng.normal()) for a in s.args
        ))
        for s in seed.statements
    ]
    try:
        return Program(statements)
    except ProgramError:
        return seed


def candidates(n: int, rng: np.random.Generator) -> list[tuple[Program, Program]]:
    """``(program, parent seed)`` per candidate."""
    seeds = {name: make() for name, make in SEEDS.items()}
    names = sorted(seeds)
    out = []
    for _ in range(n):
        name = names[int(rng.integers(len(names)))]
        out.append((perturbed(seeds[name], rng), seeds[name]))
    return out


def search(cands, task, batch: int, tracker=None) -> tuple[float, float, float]:
    """Score every candidate; returns (wall s, process CPU s, wall s inside tracker calls)."""
    seen: dict[str, float] = {}
    stats = SearchStats()  # the search's counts, which the tracker reads
    in_tracker = 0.0
    start, cpu_start = time.perf_counter(), time.process_time()
    stage = tracker.child_run("evolve") if tracker is not None else None
    if stage is not None:
        t = time.perf_counter()
        stage.__enter__()
        in_tracker += time.perf_counter() - t
    for lo in range(0, len(cands), batch):
        records = []
        for i, (program, parent) in enumerate(cands[lo : lo + batch], start=lo):
            h = program.structural_hash()
            hit = h in seen
            fitness = seen[h] if hit else task(program)
            seen[h] = fitness
            records.append(CandidateRecord(
                index=i, program=program.to_text(), structural_hash=h, fingerprint="",
                parent_hash=parent.structural_hash(), mutation="change_constant",
                generation=1, stage="proxy", fitness=fitness,
                cache_hit="structural" if hit else "",
                rejection="" if math.isfinite(fitness) else "diverged",
            ))
        stats.count(records)
        if tracker is not None:
            t = time.perf_counter()
            tracker.log_candidates(records, stats)
            in_tracker += time.perf_counter() - t
    if stage is not None:
        t = time.perf_counter()
        stage.__exit__(None, None, None)  # final flush of table and metrics, fitness plot
        in_tracker += time.perf_counter() - t
    return time.perf_counter() - start, time.process_time() - cpu_start, in_tracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100, help="Quadratic training steps")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    cands = candidates(args.candidates, np.random.default_rng(0))
    task = Quadratic(steps=args.steps)
    task(cands[0][0])  # build the task's data outside the timings
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        from pipeline.tracking import Tracker

        uri = "sqlite:///" + (Path(tmp) / "mlflow.db").as_posix()
        tracker = Tracker("tracking-overhead", uri, metrics_every=args.batch)  # one-time setup
        plain, tracked = [], []
        for _ in range(args.repeats):  # alternate, so drifts in machine load hit both
            plain.append(search(cands, task, args.batch))
            tracked.append(search(cands, task, args.batch, tracker))
    n = args.candidates
    best_plain = min(plain)
    wall, cpu, in_tracker = min(tracked)
    print(f"{n} candidates, batches of {args.batch}, Quadratic(steps={args.steps}), "
          f"best of {args.repeats} alternating runs")
    all_plain = ", ".join(f"{t:.2f}" for t, _, _ in plain)
    all_tracked = ", ".join(f"{t:.2f}" for t, _, _ in tracked)
    print(f"  without tracking : {best_plain[0]:7.2f} s wall  (all: {all_plain})")
    print(f"  with tracking    : {wall:7.2f} s wall  (all: {all_tracked})")
    print(f"  time inside tracker calls: {in_tracker:.2f} s = "
          f"{1e6 * in_tracker / n:.0f} us per candidate")
    print(f"  logging share of wall time (tracker calls / tracked wall): {in_tracker / wall:.1%}")
    print(f"  ratio tracked / untracked, best of each: wall {wall / best_plain[0]:.3f}, "
          f"process CPU {cpu / min(c for _, c, _ in plain):.3f} (wall is noisy on a busy machine)")

if __name__ == "__main__":
    main()
