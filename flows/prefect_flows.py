"""Prefect flows: thin wrappers over :mod:`flows.stages`.

Every flow takes its gin files and bindings as parameters (so a deployment or a worker gets
the whole experiment from them), tracks to MLflow, and runs evaluation as Prefect tasks, one
per chunk of candidates, with retries. With no ``PREFECT_API_URL`` Prefect starts a temporary
local server by itself; with one, runs appear on that server.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import config, rediscover, stages
from flows.progress import Progress
from flows.settings import EvolveSettings
from pipeline import report
from pipeline import seeds as seed_programs
from pipeline.evaluate import Hurdles
from pipeline.program import Program
from pipeline.proxy import Proxy
from pipeline.tracking import Tracker, git_commit, run_url

__all__ = [
    "benchmark_flow",
    "discover_flow",
    "rediscover_flow",
    "evolve_flow",
    "funnel_flow",
    "simplify_flow",
]


@task(
    name="evaluate-candidates",
    retries=2,
    retry_delay_seconds=1,
    cache_policy=NO_CACHE,
    task_run_name="evaluate {n} candidates",
)
def evaluate_chunk(
    texts: list[str],
    proxy: Proxy,
    hurdles: Hurdles,
    cache_dir: str | None,
    n: int,
    timeout_s: float | None = None,
) -> list:
    """One chunk of candidates trained together; persisted so a re-run reuses it."""
    return stages.evaluate_texts(texts, proxy, hurdles, cache_dir, timeout_s)


def prefect_evaluator(cfg: EvolveSettings, proxy: Proxy, cache_dir: str | None
                      ) -> stages.EvaluateBatch:
    """``programs -> fitnesses`` on the calibrated ``proxy``, through Prefect tasks of
    ``cfg.eval_chunk`` programs each."""

    def run(programs: Sequence[Program]) -> list:
        texts = [p.to_text() for p in programs]
        chunks = [texts[i : i + cfg.eval_chunk] for i in range(0, len(texts), cfg.eval_chunk)]
        futures = [
            evaluate_chunk.submit(c, proxy, cfg.hurdles, cache_dir, len(c), cfg.eval_timeout_s)
            for c in chunks
        ]
        return [f for fut in futures for f in fut.result()]

    return run


def proxy_fitness(cfg: EvolveSettings, proxy: Proxy):
    """Programs' fitnesses on the calibrated ``proxy``, trained together in one batch (the
    simplifier's low-effect passes)."""

    def fitness(programs: Sequence[Program]) -> list[float]:
        texts = [p.to_text() for p in programs]
        return [s.fitness for s in stages.evaluate_texts(texts, proxy, cfg.hurdles)]

    return fitness


def _setup(gin_files: Sequence[str], gin_params: Sequence[str]):
    text = config.parse(gin_files, gin_params)
    exp = config.configured("Experiment")
    return text, exp, Tracker(exp.name, **asdict(config.configured("TrackingSettings")))


@flow(name="lionforge-evolve")
def evolve_flow(
    gin_files: list[str], gin_params: list[str] | None = None, run_dir: str = "runs/evolve",
    budget: int | None = None, show_progress: bool = True,
) -> dict:
    """Warm-started regularized evolution on the proxy task; resumes from ``run_dir``."""
    text, exp, tracker = _setup(gin_files, gin_params or [])
    cfg = config.configured("EvolveSettings")
    stages.open_run_dir(cfg, exp, run_dir)
    with tracker.run("evolve", config_text=text, params=stages.settings_params(cfg),
                     seed=exp.seed,
                     run_id=stages.remembered_run(run_dir, tracker, "evolve")) as run_id:
        stages.remember_run(run_dir, tracker, "evolve", run_id)  # a re-run reopens this run
        search = stages.evolve_stage(
            cfg, exp, run_dir,
            prefect_evaluator(cfg, stages.calibrated_proxy(cfg, run_dir, tracker),
                              str(Path(run_dir) / "batches")),
            budget=budget, tracker=tracker,
            progress=Progress(budget or cfg.budget) if show_progress else None,
        )
    return stages.summary_of(search)


@flow(name="lionforge-funnel")
def funnel_flow(gin_files: list[str], gin_params: list[str] | None = None,
                run_dir: str = "runs/evolve") -> list[dict]:
    """The search in ``run_dir`` through the funnel; returns the funnel table."""
    from pipeline.evolve import Search

    text, exp, tracker = _setup(gin_files, gin_params or [])
    search = Search.resume(Path(run_dir) / stages.SEARCH_FILE)
    cfg = config.configured("FunnelSettings")
    with tracker.run("funnel", config_text=text, seed=exp.seed):
        result = stages.funnel_stage(
            search, cfg, stages.stage_evaluator(config.configured("EvolveSettings")), tracker,
            stages.funnel_progress(cfg),
        )
    print(result.format(stages.funnel_labels(result, cfg.baseline)))
    return result.table()


@flow(name="lionforge-simplify")
def simplify_flow(program_text: str, gin_files: list[str],
                  gin_params: list[str] | None = None) -> str:
    """A program simplified to a readable rule; returns its text."""
    text, exp, tracker = _setup(gin_files, gin_params or [])
    program = Program.parse(program_text)
    evolve_cfg = config.configured("EvolveSettings")
    with tracker.run("simplify", config_text=text, seed=exp.seed):
        proxy = stages.calibrated_proxy(evolve_cfg, tracker=tracker)
        result = stages.simplify_stage(
            program, config.configured("SimplifySettings"), proxy_fitness(evolve_cfg, proxy),
            proxy.noise, tracker,
        )
    print(result.summary())
    return result.program.to_text()


@flow(name="lionforge-benchmark")
def benchmark_flow(program_text: str, gin_files: list[str],
                   gin_params: list[str] | None = None, lr_multiplier: float = 1.0) -> list[dict]:
    """A program against Keras' AdamW and Lion on the target tasks."""
    text, exp, tracker = _setup(gin_files, gin_params or [])
    cfg = config.configured("BenchmarkSettings")
    with tracker.run("benchmark", config_text=text, seed=exp.seed):
        result = stages.benchmark_stage(Program.parse(program_text), lr_multiplier, cfg, tracker,
                                        stages.benchmark_progress(cfg))
    print(result.format())
    return result.table()


@flow(name="lionforge-discover")
def discover_flow(
    gin_files: list[str], gin_params: list[str] | None = None, run_dir: str = "runs/discover",
    budget: int | None = None, show_progress: bool = True, parent_run_id: str | None = None,
) -> dict:
    """evolve -> funnel -> simplify -> benchmark -> register, in one tracked MLflow run
    (nested under ``parent_run_id`` when given)."""
    text, exp, tracker = _setup(gin_files, gin_params or [])
    evolve_cfg = config.configured("EvolveSettings")
    funnel_cfg = config.configured("FunnelSettings")
    simplify_cfg = config.configured("SimplifySettings")
    bench_cfg = config.configured("BenchmarkSettings")
    register_cfg = config.configured("RegisterSettings")
    params = stages.settings_params(evolve_cfg, funnel_cfg, simplify_cfg, bench_cfg)
    stages.open_run_dir(evolve_cfg, exp, run_dir)
    nest = {MLFLOW_PARENT_RUN_ID: parent_run_id} if parent_run_id else None
    with tracker.run("discover", config_text=text, params=params, seed=exp.seed, tags=nest,
                     run_id=stages.remembered_run(run_dir, tracker, "discover")) as run_id:
        stages.remember_run(run_dir, tracker, "discover", run_id)
        with tracker.stage("evolve", params=stages.settings_params(evolve_cfg),
                           run_id=stages.remembered_run(run_dir, tracker, "evolve")) as ev_id:
            stages.remember_run(run_dir, tracker, "evolve", ev_id)
            proxy = stages.calibrated_proxy(evolve_cfg, run_dir, tracker)
            search = stages.evolve_stage(
                evolve_cfg, exp, run_dir,
                prefect_evaluator(evolve_cfg, proxy, str(Path(run_dir) / "batches")),
                budget=budget, tracker=tracker,
                progress=Progress(budget or evolve_cfg.budget) if show_progress else None,
            )
        stage_evaluator = stages.stage_evaluator(evolve_cfg)
        with tracker.stage("funnel", params=stages.settings_params(funnel_cfg)):
            funnel = stages.funnel_stage(
                search, funnel_cfg, stage_evaluator, tracker,
                stages.funnel_progress(funnel_cfg) if show_progress else None)
        # The champion is what the funnel validated: its winner when that beat the baseline
        # at every stage, the last included; otherwise nothing better was found and the
        # baseline itself is registered. The winner is simplified and benchmarked either way.
        winner = funnel.winner
        beat = funnel.beat_baseline
        baseline = seed_programs.SEEDS[funnel_cfg.baseline]()
        simple = None
        if winner is not None:
            with tracker.stage("simplify", params=stages.settings_params(simplify_cfg)):
                simple = stages.simplify_stage(
                    winner, simplify_cfg, proxy_fitness(evolve_cfg, proxy), proxy.noise,
                    tracker, stages.last_stage_check(funnel, funnel_cfg, stage_evaluator),
                )
                tracker.log_lineage(winner.structural_hash(), search.records)
        contender = simple.program if simple is not None else baseline
        with tracker.stage("benchmark", params=stages.settings_params(bench_cfg)):
            bench = stages.benchmark_stage(
                contender, funnel.winner_lr_multiplier if simple is not None else 1.0,
                bench_cfg, tracker,
                stages.benchmark_progress(bench_cfg) if show_progress else None,
            )
        champion = contender if beat else baseline
        best_proxy = search.best.fitness if search.best is not None else None
        model_uri = f"models:/{register_cfg.model_name}@{register_cfg.alias}"
        tracker.set_tags({"beat_baseline": str(beat),
                          "champion": "discovered" if beat else "baseline",
                          "winner_reads_lr": str(contender.reads_lr),
                          MLFLOW_RUN_NOTE: report.run_description(
                              champion, contender, beat, funnel, bench, model_uri)})
        tracker.log_metrics(report.headline_metrics(best_proxy, funnel, bench))
        version = stages.register_stage(
            champion, register_cfg, tracker,
            description=report.version_description(champion, beat, bench, model_uri),
            tags=report.version_tags(champion, beat, funnel, bench, best_proxy,
                                     config=",".join(Path(f).name for f in gin_files),
                                     commit=git_commit()),
        )
    summary = {
        "run_id": run_id,
        "experiment": exp.name,
        "tracking_uri": tracker.tracking_uri,
        "run_url": run_url(tracker.tracking_uri, tracker.experiment_id, run_id),
        "winner": simple.program.to_text() if simple is not None else None,
        "champion": champion.to_text(),
        "beat_baseline_in_funnel": beat,
        "proxy_noise": proxy.noise,
        "registered": f"models:/{register_cfg.model_name}@{register_cfg.alias}",
        "model_version": getattr(version, "version", None),
        "evolve": stages.summary_of(search),
        "funnel": funnel.format(stages.funnel_labels(funnel, funnel_cfg.baseline)),
        "benchmark": bench.format(),
        "benchmark_table": bench.table(),
    }
    return summary


@flow(name="lionforge-rediscover")
def rediscover_flow(gin_files: list[str], gin_params: list[str] | None = None,
                    seeds: Sequence[int] = (0, 1, 2, 3, 4),
                    run_root: str = "runs/rediscover") -> list[dict]:
    """One independent ``discover`` per seed (``Experiment.seed``), each resumable in
    ``run_root/seed_N`` and nested under one MLflow ``rediscover`` run; each winner is
    classified by behaviour. A finished seed is never re-run. Returns the table's rows."""
    gin_params = list(gin_params or [])
    text, exp, tracker = _setup(gin_files, gin_params)
    rows = []
    with tracker.run("rediscover", config_text=text, seed=exp.seed,
                     params={"seeds": ",".join(map(str, seeds))},
                     run_id=stages.remembered_run(run_root, tracker, "rediscover")) as parent:
        stages.remember_run(run_root, tracker, "rediscover", parent)
        for seed in seeds:
            row = rediscover.read_row(run_root, seed)
            if row is None:
                wall, cpu = time.perf_counter(), time.process_time()
                out = discover_flow(gin_files, [*gin_params, f"Experiment.seed = {seed}"],
                                    str(rediscover.seed_dir(run_root, seed)), None, False,
                                    parent_run_id=parent)
                row = rediscover.row_of(seed, out, time.process_time() - cpu,
                                        time.perf_counter() - wall)
                rediscover.write_row(run_root, row)
            rows.append(row)
        table = rediscover.format_table(rows)
        tracker.log_table(rows, "rediscover")
        tracker.log_text(table, "rediscover.txt")
        tracker.log_metrics({"rediscovered": sum(r["class"] == rediscover.TARGET.value
                                                 for r in rows), "seeds": len(rows)})
    print(table)
    return rows
