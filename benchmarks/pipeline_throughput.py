"""The search as ``lionforge evolve`` runs it, against the evaluator alone on its programs.

A round runs the evolve flow (Prefect tasks, mutation, abstract execution, the caches, MLflow
tracking, checkpoints) for ``--budget`` candidates in a fresh run dir and a fresh sqlite
store, then trains the programs that round sent to the evaluator again, in the same batches
(one call per proposed batch, as the search makes them) with the same calibrated proxy,
straight through ``flows.steps.evaluate_texts``: no Prefect, no search, no tracking.
Both rates count the round's candidates (cache hits and rejections included), so the
evaluator-alone figure is what the pipeline would reach if training were all it did, and the
ratio is the share of the pipeline's time spent training. Rounds interleave the two, and the
medians are reported (a shared machine's stalls hit single rounds). A first, untimed round
starts Prefect's temporary server and traces the trainers.

Prints a last line like
``pipeline: 300.1 candidates/s; evaluator alone: 420.0 candidates/s; ratio: 0.71``.

Run: ``.venv/bin/python benchmarks/pipeline_throughput.py`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _round(gin_file: str, budget: int, seed: int, root: Path, calibration: Path | None):
    """One evolve flow in a new run dir (given the warm start's ``calibration``: a long
    search's steady state, not its one-off start); returns (candidates, seconds, run dir)."""
    from flows import rundir
    from flows.prefect_flows import evolve_flow

    run_dir = root / f"run_{seed}"
    if calibration is not None:
        run_dir.mkdir(parents=True)
        shutil.copy(calibration, run_dir / rundir.CALIBRATION_FILE)
    params = [f"Experiment.seed = {seed}", f"EvolveSettings.budget = {budget}"]
    t0 = time.perf_counter()
    out = evolve_flow([gin_file], params, str(run_dir), budget, False)
    return out["candidates_evaluated"], time.perf_counter() - t0, run_dir


def _evaluator_alone(run_dir: Path, gin_file: str, seed: int) -> float:
    """Seconds to train the run's evaluated programs again, batch by batch."""
    from flows import config, rundir, steps
    from pipeline.evolve import Search
    from pipeline.proxy import Proxy

    config.parse([gin_file], [f"Experiment.seed = {seed}"])
    cfg = config.configured("EvolveSettings")
    proxy = Proxy.from_json(json.loads((run_dir / rundir.CALIBRATION_FILE).read_text()))
    search = Search.resume(run_dir / rundir.SEARCH_FILE)
    size = cfg.evolution.batch_size
    batches: dict[int, list[str]] = {}
    for r in search.records:
        if r.evaluated and r.rejection == "":
            batches.setdefault(r.index // size, []).append(r.program)
    t0 = time.perf_counter()
    for texts in batches.values():
        for i in range(0, len(texts), cfg.eval_chunk):
            steps.evaluate_texts(texts[i:i + cfg.eval_chunk], proxy, cfg.hurdles)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gin_file", default="quickstart.gin",
                    help="the experiment (default: make discover's)")
    ap.add_argument("--budget", type=int, default=3000,
                    help="candidates per round (default: make discover's budget)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.budget < 1 or args.rounds < 1:
        ap.error(f"--budget and --rounds must be >= 1. Received: {args.budget}, {args.rounds}")
    import flows.prefect_flows  # noqa: F401  (sets up Prefect's logging, which quiet() adjusts)
    from flows import config, rundir
    from flows.console import quiet

    with tempfile.TemporaryDirectory() as tmp, quiet(until_exit=True):
        root = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        os.chdir(root)
        config.parse([args.gin_file], [])
        with config.prefect_api_for(config.task_runner()):
            *_, warm = _round(args.gin_file, max(1, args.budget // 10), 1000, root, None)
            calibration = warm / rundir.CALIBRATION_FILE
            pipe, alone = [], []
            for k in range(args.rounds):
                n, seconds, run_dir = _round(args.gin_file, args.budget, k, root, calibration)
                t_alone = _evaluator_alone(run_dir, args.gin_file, k)
                pipe.append(n / seconds)
                alone.append(n / t_alone)
                print(f"round {k}: {n} candidates; pipeline {seconds:.1f} s "
                      f"({n / seconds:.1f}/s); evaluator alone {t_alone:.1f} s "
                      f"({n / t_alone:.1f}/s)", flush=True)
    p, e = statistics.median(pipe), statistics.median(alone)
    print(f"pipeline: {p:.1f} candidates/s; evaluator alone: {e:.1f} candidates/s; "
          f"ratio: {p / e:.2f}")


if __name__ == "__main__":
    main()
