"""Prefect flows: thin wrappers over :mod:`flows.steps`.

Every flow takes its gin files and bindings as parameters (so a deployment or a worker gets
the whole experiment from them) and reads them once into a
:class:`flows.config.Configuration`, or takes the one its caller has parsed (``settings``,
as the CLI does). Each tracks to MLflow and runs evaluation as Prefect tasks, one per chunk
of candidates, with retries. With no ``PREFECT_API_URL`` Prefect starts a temporary local
server by itself; with one, runs appear on that server.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic.json_schema import SkipJsonSchema  # settings: passed in-process, never a UI form

from flows import config, rediscover, rundir, steps
from flows.config import Configuration
from flows.progress import Progress
from flows.settings import EvolveSettings, as_params
from pipeline import report
from pipeline import seeds as seed_programs
from pipeline.benchmark import BenchmarkResult
from pipeline.evaluator import Evaluator, Hurdles
from pipeline.evolve import Search
from pipeline.funnel import FunnelResult
from pipeline.program import Program
from pipeline.proxy import Proxy
from pipeline.tracking import Tracker
from pipeline.tracking_server import git_commit, run_url

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
    return steps.evaluate_texts(texts, proxy, hurdles, cache_dir, timeout_s)


def prefect_evaluator(cfg: EvolveSettings, proxy: Proxy, cache_dir: str | None
                      ) -> steps.EvaluateBatch:
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
        return [s.fitness for s in steps.evaluate_texts(texts, proxy, cfg.hurdles)]

    return fitness


def _setup(gin_files: Sequence[str], gin_params: Sequence[str] | None,
           settings: Configuration | None) -> tuple[Configuration, Tracker]:
    """The flow's configuration (``settings``, when the caller has parsed the gin files
    already, as the CLI does; else parsed here) and its tracker."""
    conf = settings if settings is not None else config.load(gin_files, gin_params or [])
    return conf, Tracker(conf.experiment.name, **asdict(conf.tracking))


@flow(name="lionforge-evolve")
def evolve_flow(
    gin_files: list[str], gin_params: list[str] | None = None, run_dir: str = "runs/evolve",
    budget: int | None = None, show_progress: bool = True,
    settings: SkipJsonSchema[Configuration | None] = None,
) -> dict:
    """Warm-started regularized evolution on the proxy task; resumes from ``run_dir``.
    ``settings``: what ``gin_files`` configure, when the caller has parsed them already."""
    conf, tracker = _setup(gin_files, gin_params, settings)
    cfg, exp = conf.evolve, conf.experiment
    rundir.open_run_dir(cfg, exp, run_dir)
    with tracker.run("evolve", config_text=conf.text, params=as_params(cfg),
                     seed=exp.seed,
                     run_id=rundir.remembered_run(run_dir, tracker, "evolve")) as run_id:
        search, _ = _evolve_in(conf, tracker, run_dir, run_id, budget, show_progress)
    return steps.summary_of(search)


@flow(name="lionforge-funnel")
def funnel_flow(gin_files: list[str], gin_params: list[str] | None = None,
                run_dir: str = "runs/evolve", settings: SkipJsonSchema[Configuration | None] = None
                ) -> list[dict]:
    """The search in ``run_dir`` through the funnel; returns the funnel table."""
    conf, tracker = _setup(gin_files, gin_params, settings)
    search = Search.resume(Path(run_dir) / rundir.SEARCH_FILE)
    cfg = conf.funnel
    with tracker.run("funnel", config_text=conf.text, seed=conf.experiment.seed):
        evaluator = steps.stage_evaluator(conf.evolve, Evaluator())  # this run's trainers
        result = steps.funnel_step(search, cfg, evaluator, tracker, steps.funnel_progress(cfg))
    print(result.format(steps.funnel_labels(result, cfg.baseline)))
    return result.table()


@flow(name="lionforge-simplify")
def simplify_flow(program_text: str, gin_files: list[str],
                  gin_params: list[str] | None = None,
                  settings: SkipJsonSchema[Configuration | None] = None) -> str:
    """A program simplified to a readable rule; returns its text."""
    conf, tracker = _setup(gin_files, gin_params, settings)
    program = Program.parse(program_text)
    with tracker.run("simplify", config_text=conf.text, seed=conf.experiment.seed):
        proxy = steps.calibrated_proxy(conf.evolve, tracker=tracker)
        result = steps.simplify_step(program, conf.simplify, proxy_fitness(conf.evolve, proxy),
                                       proxy.noise, tracker)
    print(result.summary())
    return result.program.to_text()


@flow(name="lionforge-benchmark")
def benchmark_flow(program_text: str, gin_files: list[str],
                   gin_params: list[str] | None = None, lr_multiplier: float = 1.0,
                   settings: SkipJsonSchema[Configuration | None] = None) -> list[dict]:
    """A program against Keras' AdamW and Lion on the target tasks."""
    conf, tracker = _setup(gin_files, gin_params, settings)
    cfg = conf.benchmark
    with tracker.run("benchmark", config_text=conf.text, seed=conf.experiment.seed):
        result = steps.benchmark_step(Program.parse(program_text), lr_multiplier, cfg, tracker,
                                        steps.benchmark_progress(cfg))
    print(result.format())
    return result.table()


@flow(name="lionforge-discover")
def discover_flow(
    gin_files: list[str], gin_params: list[str] | None = None, run_dir: str = "runs/discover",
    budget: int | None = None, show_progress: bool = True, parent_run_id: str | None = None,
    settings: SkipJsonSchema[Configuration | None] = None,
) -> dict:
    """evolve -> funnel -> simplify -> benchmark -> register, in one tracked MLflow run
    (nested under ``parent_run_id`` when given)."""
    conf, tracker = _setup(gin_files, gin_params, settings)
    params = as_params(conf.evolve, conf.funnel, conf.simplify, conf.benchmark)
    rundir.open_run_dir(conf.evolve, conf.experiment, run_dir)
    nest = {MLFLOW_PARENT_RUN_ID: parent_run_id} if parent_run_id else None
    with tracker.run("discover", config_text=conf.text, params=params,
                     seed=conf.experiment.seed, tags=nest,
                     run_id=rundir.remembered_run(run_dir, tracker, "discover")) as run_id:
        rundir.remember_run(run_dir, tracker, "discover", run_id)
        search, proxy = _discover_evolve(conf, tracker, run_dir, budget, show_progress)
        stage_evaluator = steps.stage_evaluator(conf.evolve, Evaluator())  # this run's trainers
        with tracker.child_run("funnel", params=as_params(conf.funnel)):
            funnel = steps.funnel_step(
                search, conf.funnel, stage_evaluator, tracker,
                steps.funnel_progress(conf.funnel) if show_progress else None)
        # The champion is what the funnel validated: its winner when that beat the baseline
        # at every stage, the last included; otherwise nothing better was found and the
        # baseline itself is registered. The winner is simplified and benchmarked either way.
        simple = None
        if funnel.winner is not None:
            with tracker.child_run("simplify", params=as_params(conf.simplify)):
                simple = steps.simplify_step(
                    funnel.winner, conf.simplify, proxy_fitness(conf.evolve, proxy),
                    proxy.noise, tracker,
                    steps.last_stage_check(funnel, conf.funnel, stage_evaluator),
                )
                tracker.log_lineage(funnel.winner.structural_hash(), search.records)
        contender = (simple.program if simple is not None
                     else seed_programs.SEEDS[conf.funnel.baseline]())
        with tracker.child_run("benchmark", params=as_params(conf.benchmark)):
            bench = steps.benchmark_step(
                contender, funnel.winner_lr_multiplier if simple is not None else 1.0,
                conf.benchmark, tracker,
                steps.benchmark_progress(conf.benchmark) if show_progress else None,
            )
        champion, version = _register_champion(conf, tracker, search, funnel, contender, bench)
    return {
        "run_id": run_id,
        "experiment": conf.experiment.name,
        "tracking_uri": tracker.tracking_uri,
        "run_url": run_url(tracker.tracking_uri, tracker.experiment_id, run_id),
        "winner": simple.program.to_text() if simple is not None else None,
        "champion": champion.to_text(),
        "beat_baseline_in_funnel": funnel.beat_baseline,
        "proxy_noise": proxy.noise,
        "registered": f"models:/{conf.register.model_name}@{conf.register.alias}",
        "model_version": getattr(version, "version", None),
        "evolve": steps.summary_of(search),
        "funnel": funnel.format(steps.funnel_labels(funnel, conf.funnel.baseline)),
        "benchmark": bench.format(),
        "benchmark_table": bench.table(),
    }


def _discover_evolve(conf: Configuration, tracker: Tracker, run_dir: str,
                     budget: int | None, show_progress: bool) -> tuple[Search, Proxy]:
    """discover's evolve step (its own child run, reopened on a re-run): the search and the
    calibrated proxy it scored on."""
    with tracker.child_run("evolve", params=as_params(conf.evolve),
                           run_id=rundir.remembered_run(run_dir, tracker, "evolve")) as ev_id:
        return _evolve_in(conf, tracker, run_dir, ev_id, budget, show_progress)


def _evolve_in(conf: Configuration, tracker: Tracker, run_dir: str, run_id: str,
               budget: int | None, show_progress: bool) -> tuple[Search, Proxy]:
    """The evolve step inside the MLflow run ``run_id`` that the caller opened: the run is
    remembered in the run dir (a re-run reopens it), the proxy calibrated (or read back) and
    the search run on Prefect tasks. Returns the search and the proxy it scored on."""
    rundir.remember_run(run_dir, tracker, "evolve", run_id)
    cfg = conf.evolve
    proxy = steps.calibrated_proxy(cfg, run_dir, tracker)
    search = steps.evolve_step(
        cfg, conf.experiment, run_dir,
        prefect_evaluator(cfg, proxy, str(Path(run_dir) / "batches")),
        budget=budget, tracker=tracker,
        progress=Progress(budget or cfg.budget) if show_progress else None,
    )
    return search, proxy


def _register_champion(conf: Configuration, tracker: Tracker, search: Search,
                       funnel: FunnelResult, contender: Program, bench: BenchmarkResult):
    """Describe the discover run (tags, description, headline metrics) and register the
    champion: the benchmarked ``contender`` if the funnel validated it, else the baseline.
    Returns the champion and its model version."""
    beat = funnel.beat_baseline
    champion = contender if beat else seed_programs.SEEDS[conf.funnel.baseline]()
    best_proxy = search.best.fitness if search.best is not None else None
    model_uri = f"models:/{conf.register.model_name}@{conf.register.alias}"
    tracker.set_tags({"beat_baseline": str(beat),
                      "champion": "discovered" if beat else "baseline",
                      "winner_reads_lr": str(contender.reads_lr),
                      MLFLOW_RUN_NOTE: report.run_description(
                          champion, contender, beat, funnel, bench, model_uri)})
    tracker.log_metrics(report.headline_metrics(best_proxy, funnel, bench))
    version = steps.register_step(
        champion, conf.register, tracker,
        description=report.version_description(champion, beat, bench, model_uri),
        tags=report.version_tags(champion, beat, funnel, bench, best_proxy,
                                 config=",".join(Path(f).name for f in conf.gin_files),
                                 commit=git_commit()),
    )
    return champion, version


@flow(name="lionforge-rediscover")
def rediscover_flow(gin_files: list[str], gin_params: list[str] | None = None,
                    seeds: Sequence[int] = (0, 1, 2, 3, 4),
                    run_root: str = "runs/rediscover",
                    settings: SkipJsonSchema[Configuration | None] = None) -> list[dict]:
    """One independent ``discover`` per seed (``Experiment.seed``), each resumable in
    ``run_root/seed_N`` and nested under one MLflow ``rediscover`` run; each winner is
    classified by behaviour. A finished seed is never re-run. Returns the table's rows."""
    conf, tracker = _setup(gin_files, gin_params, settings)
    rows = []
    with tracker.run("rediscover", config_text=conf.text, seed=conf.experiment.seed,
                     params={"seeds": ",".join(map(str, seeds))},
                     run_id=rundir.remembered_run(run_root, tracker, "rediscover")) as parent:
        rundir.remember_run(run_root, tracker, "rediscover", parent)
        for seed in seeds:
            row = rediscover.read_row(run_root, seed)
            if row is None:
                wall, cpu = time.perf_counter(), time.process_time()
                # Each seed's configuration is its own parse: the seed binding is in the
                # text its run logs.
                out = discover_flow(list(conf.gin_files),
                                    [*conf.gin_params, f"Experiment.seed = {seed}"],
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
