"""The steps of a discovery as plain functions: evolve, funnel, simplify, benchmark, register.

Each takes its settings, an ``evaluate`` function and an optional :class:`Tracker` (each step
logs to its own MLflow child run, tagged ``stage``); the Prefect flows in
:mod:`flows.prefect_flows` are thin wrappers that supply Prefect-task evaluation. Nothing here
depends on Prefect, so every step runs and tests as plain Python. A *stage* is a rung of the
funnel (:class:`pipeline.funnel.Stage`); what a run dir holds is in :mod:`flows.rundir`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from flows.progress import Progress, counted
from flows.rundir import CALIBRATION_FILE, SEARCH_FILE, SUMMARY_FILE, open_run_dir
from flows.settings import (
    BenchmarkSettings,
    EvolveSettings,
    Experiment,
    FunnelSettings,
    RegisterSettings,
    SimplifySettings,
)
from pipeline import seeds as seed_programs
from pipeline.benchmark import (
    DISCOVERED,
    BenchmarkResult,
    keras_contender,
    program_contender,
    run_benchmark,
)
from pipeline.evaluator import Evaluator, Hurdles, evaluate
from pipeline.evolve import Search
from pipeline.fitness import WORST, mean_or_worst
from pipeline.fitness import from_json as fitness_from_json
from pipeline.fitness import to_json as fitness_to_json
from pipeline.funnel import FunnelResult, Stage, run_funnel, score_stage, top_k_of_records
from pipeline.program import Program
from pipeline.proxy import Proxy, calibrate
from pipeline.proxy import score as proxy_score
from pipeline.report import REGISTERED_MODEL_DESCRIPTION
from pipeline.screen import Verdict
from pipeline.search_config import Budget
from pipeline.simplify import SimplifyResult, simplify
from pipeline.store import write_json
from pipeline.tasks import make_task
from pipeline.tracking import Tracker

__all__ = [
    "EvaluateBatch",
    "batch_key",
    "calibrated_proxy",
    "benchmark_step",
    "evaluate_texts",
    "evolve_step",
    "funnel_step",
    "last_stage_check",
    "register_step",
    "simplify_step",
    "summary_of",
    "task_evaluator",
]

# programs -> fitnesses (higher is better) or evaluator verdicts, in order
EvaluateBatch = Callable[[Sequence[Program]], "list[float | Verdict]"]

BENCHMARK_CONTENDERS = 3  # benchmark_step's: the program, Keras' AdamW and Keras' Lion


# ---- evaluation -------------------------------------------------------------------------------


def batch_key(texts: Sequence[str], proxy: Proxy, hurdles: Hurdles) -> str:
    """A content key for one evaluation batch: same programs and proxy, same key."""
    payload = json.dumps([list(texts), proxy.to_json(), repr(hurdles)])
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def task_evaluator(hurdles: Hurdles, evaluator: Evaluator | None = None):
    """``evaluate(programs, task, scale, seed) -> fitnesses`` on the batched TF evaluator
    (``evaluator``'s trainers; default: the process's shared one)."""

    def run(programs: Sequence[Program], task: str, scale: float, seed: int) -> list[float]:
        return [r.fitness for r in evaluate(list(programs), task, scale, seed, hurdles=hurdles,
                                            evaluator=evaluator)]

    return run


def evaluate_texts(
    texts: Sequence[str],
    proxy: Proxy,
    hurdles: Hurdles,
    cache_dir: str | None = None,
    timeout_s: float | None = None,
) -> list[Verdict]:
    """Proxy fitnesses of programs given as text (parsed by our parser), persisted as JSON.

    Each result carries the learning-rate multiplier that won on each proxy task. With
    ``cache_dir``, a finished batch is written there atomically and a later call with the
    same key (a re-run after a crash) reads it instead of training again. With ``timeout_s``
    the batch trains in a worker process that is killed past that many seconds; its programs
    then score worst with the rejection ``"timeout"`` (persisted too, so a resumed search
    sees the same verdict).
    """
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{batch_key(texts, proxy, hurdles)}.json"
        if path.exists():
            return _batch_from_json(json.loads(path.read_text()))
    results: list[Verdict]
    if timeout_s is not None:
        from flows.isolated import EvaluationTimeout, evaluate_with_deadline

        try:
            results = list(evaluate_with_deadline(texts, proxy, hurdles, timeout_s))
        except EvaluationTimeout:
            results = [Verdict(rejection=TIMEOUT) for _ in texts]
    else:
        programs = [Program.parse(t) for t in texts]
        results = [Verdict(s.fitness, "", s.lr_multipliers)
                   for s in proxy_score(programs, proxy, task_evaluator(hurdles))]
    if path is not None:
        write_json(path, _batch_to_json(results), indent=None)
    return results


TIMEOUT = "timeout"  # the rejection of a candidate whose batch ran past its time limit


def _batch_to_json(results: Sequence[Verdict]) -> dict:
    return {"fitness": [fitness_to_json(r.fitness) for r in results],
            "rejection": [r.rejection for r in results],
            "lr_multipliers": [list(r.lr_multipliers) for r in results]}


def _batch_from_json(d: dict) -> list[Verdict]:
    return [Verdict(fitness_from_json(f), why, tuple(mults)) for f, why, mults
            in zip(d["fitness"], d["rejection"], d["lr_multipliers"], strict=True)]


def calibrated_proxy(cfg: EvolveSettings, run_dir: str | os.PathLike | None = None,
                     tracker: Tracker | None = None) -> Proxy:
    """``cfg.proxy`` calibrated on the warm start (its scores over init seeds: the noise).

    Read from ``run_dir/calibration.json`` when that was measured for the same proxy and
    warm start (a resumed search scores exactly as before); otherwise measured and written
    there. With a ``tracker``, the noise figures are logged as metrics.
    """
    seed = seed_programs.SEEDS[cfg.seed_program]()
    bare = replace(cfg.proxy, calibration=None)
    path = Path(run_dir) / CALIBRATION_FILE if run_dir is not None else None
    proxy = None
    if path is not None and path.exists():
        stored = Proxy.from_json(json.loads(path.read_text()))
        if (replace(stored, calibration=None) == bare and stored.calibration is not None
                and stored.calibration.program == seed.to_text()):
            proxy = stored
    if proxy is None:
        proxy = calibrate(bare, seed, task_evaluator(cfg.hurdles))
        if path is not None:
            write_json(path, proxy.to_json())
    if tracker is not None:
        cal = proxy.calibration
        metrics = {"proxy_noise": proxy.noise}
        for task, mean, std in zip(proxy.tasks, cal.means, cal.stds, strict=True):
            metrics[f"seed_mean_{task}"], metrics[f"seed_std_{task}"] = mean, std
        tracker.log_metrics(metrics, step=0)
    return proxy


# ---- evolve -----------------------------------------------------------------------------------


def summary_of(search: Search) -> dict:
    """What ``evolve`` writes to ``summary.json``."""
    best = search.best
    stats = search.stats
    return {
        "best_program": best.program.to_text() if best else None,
        "best_fitness": fitness_to_json(best.fitness) if best else None,
        "best_structural_hash": best.structural_hash if best else None,
        "candidates_evaluated": stats.candidates,
        "evaluations": stats.evaluations,
        "structural_hit_rate": stats.structural_hit_rate,
        "fec_hit_rate": stats.fec_hit_rate,
        "rejected": stats.rejected,
        "restarts": stats.restarts,
    }


def evolve_step(
    cfg: EvolveSettings,
    exp: Experiment,
    run_dir: str | os.PathLike,
    evaluate_batch: EvaluateBatch,
    *,
    budget: int | None = None,
    tracker: Tracker | None = None,
    progress: Progress | None = None,
) -> Search:
    """Run (or resume) the search in ``run_dir`` until the candidate budget is spent.

    The search state is checkpointed to ``run_dir/search.json`` after every batch; running
    again with the same ``run_dir`` resumes it. Writes ``run_dir/summary.json``. With a
    ``tracker``, the candidates its open run's table lacks (all of them for a new run; those
    after the last write before a crash for a reopened one) are logged first; the tracker's
    per-step metrics already carry the summary's figures, so only ``restarts`` is added.
    """
    run_dir = Path(run_dir)
    open_run_dir(cfg, exp, run_dir)
    checkpoint = run_dir / SEARCH_FILE
    if checkpoint.exists():
        search = Search.resume(checkpoint)
    else:
        seed = seed_programs.SEEDS[cfg.seed_program]()
        search = Search(cfg.evolution, seed, rng_seed=exp.seed, checkpoint=checkpoint)
    total = budget if budget is not None else cfg.budget
    restarts = search.stats.restarts
    if tracker is not None:
        tracker.resume_candidates(search.records, search.stats)

    def on_batch(records) -> None:
        nonlocal restarts
        stats = search.stats
        if tracker is not None:
            tracker.log_candidates(records, stats)
            if stats.restarts > restarts:
                tracker.mark_restart(stats.candidates)
        restarts = stats.restarts
        if progress is not None:
            best = search.best.fitness if search.best else WORST
            progress.update(stats.candidates, best, stats.hit_rate)

    search.run(evaluate_batch, Budget(candidates=total, seconds=cfg.max_seconds), on_batch)
    summary = summary_of(search)
    write_json(run_dir / SUMMARY_FILE, summary)
    if tracker is not None:
        tracker.flush()
        tracker.log_metrics({"restarts": summary["restarts"]},
                            step=summary["candidates_evaluated"])
    return search


# ---- funnel, simplify, benchmark, register ----------------------------------------------------


def stage_evaluator(cfg: EvolveSettings, evaluator: Evaluator | None = None
                    ) -> Callable[[Sequence[Program], Stage, int], list[float]]:
    """``evaluate(programs, stage, seed)`` for the funnel, on the batched TF evaluator."""
    on_task = task_evaluator(cfg.hurdles, evaluator)

    def run(programs: Sequence[Program], stage: Stage, seed: int) -> list[float]:
        return on_task(programs, stage.task, stage.scale, seed)

    return run


def funnel_step(
    search: Search, cfg: FunnelSettings, evaluator, tracker: Tracker | None = None,
    progress: Progress | None = None,
) -> FunnelResult:
    """The proxy's top-k distinct programs through the funnel's stages. ``progress`` counts
    evaluate calls (one per stage and seed, every surviving program in it)."""
    result = run_funnel(
        top_k_of_records(search.records, cfg.top_k),
        cfg.stages,
        counted(evaluator, progress),
        baseline=seed_programs.SEEDS[cfg.baseline](),
        seeds=cfg.seeds,
        lr_multipliers=cfg.lr_multipliers,
    )
    if progress is not None:
        progress.finish()  # a gate may have stopped the funnel early
    if tracker is not None:
        from pipeline import plots

        labels = funnel_labels(result, cfg.baseline)
        rows = [{"label": labels[r["program"]], **r} for r in result.table()]
        tracker.log_table(rows, "funnel")
        tracker.log_text(result.format(labels), "funnel.txt")
        titles = {s.name: f"stage {s.name}: {s.task} x{s.scale:g}" for s in cfg.stages}
        tracker.log_figure(plots.funnel(rows, titles), "plots/funnel.png")
    return result


def funnel_progress(cfg: FunnelSettings) -> Progress:
    """The funnel's progress bar: one step per evaluate call (stage x seed)."""
    return Progress(len(cfg.stages) * len(cfg.seeds), label="funnel", unit="batches")


def funnel_labels(result: FunnelResult, baseline: str) -> dict[str, str]:
    """Program text -> a label a person reads: programs by proxy rank and behaviour
    (``#2 sign-momentum``, the winner marked), the baseline by name (``AdamW (baseline)``)."""
    from pipeline import plots
    from pipeline.classify import classify

    ranked = dict.fromkeys(r.program for r in result.rows if not r.is_baseline)
    labels = {text: f"#{k} {classify(Program.parse(text)).value}"
              for k, text in enumerate(ranked, 1)}
    if result.winner is not None:
        labels[result.winner.to_text()] += " (winner)"
    labels.update({r.program: f"{plots.display_name(baseline)} (baseline)"
                   for r in result.rows if r.is_baseline})
    return labels


def simplify_step(
    program: Program,
    cfg: SimplifySettings,
    fitness,
    noise: float | None,
    tracker: Tracker | None = None,
    holds_up: Callable[[Program], tuple[bool, str]] | None = None,
) -> SimplifyResult:
    """The winner simplified to a readable rule without changing what was validated.

    The low-effect passes score on the proxy (``fitness``) and may cost at most
    ``cfg.noise_fraction`` x ``noise`` (the proxy's seed-to-seed standard deviation); with
    no finite noise only the exact passes run. ``holds_up(simplified)`` re-scores the
    result where the winner was validated (the funnel's last stage) and says whether it is
    no worse beyond noise, and why; when it is worse, only the exact passes are kept.
    """
    exact_only = noise is None or not math.isfinite(noise)
    result = simplify(
        program, None if exact_only else fitness,
        tolerance=0.0 if exact_only else cfg.noise_fraction * noise,
        evolve_steps=cfg.evolve_steps, rng=0,
    )
    note = ("no finite proxy noise: exact passes only" if exact_only else
            f"low-effect tolerance {cfg.noise_fraction:g} x proxy noise {noise:.4g}")
    if holds_up is not None and not exact_only and result.program != program:
        ok, why = holds_up(result.program)
        note += f"\nre-scored on the funnel's last stage: {why}"
        if not ok:
            result = simplify(program, None, evolve_steps=0, rng=0)
            note += "\nworse beyond noise: kept only the exact passes"
    if tracker is not None:
        tracker.log_simplification(result.original, result.program)
        tracker.log_text(f"{result.summary()}\n\n{note}\n", "winner/simplification.txt")
    return result


def last_stage_check(funnel: FunnelResult, cfg: FunnelSettings, evaluator
                     ) -> Callable[[Program], tuple[bool, str]]:
    """Whether a rewrite of the funnel's winner holds up on the funnel's last stage: its
    mean (best multiplier, the funnel's seeds) is no lower than the winner's by more than
    the larger seed standard deviation of the winner and the baseline there."""
    stage = cfg.stages[-1]
    last = [r for r in funnel.rows if r.stage == stage.name]
    winner = next(r for r in last if not r.is_baseline
                  and r.structural_hash == funnel.winner.structural_hash())
    base = next(r for r in last if r.is_baseline)
    noise = max(winner.std, base.std)

    def holds_up(program: Program) -> tuple[bool, str]:
        [(_, scores)] = score_stage([program], stage, evaluator, cfg.seeds, cfg.lr_multipliers)
        mean = mean_or_worst(scores)
        ok = mean >= winner.mean - noise
        return ok, (f"simplified {mean:.4f} vs validated {winner.mean:.4f} "
                    f"(noise {noise:.4f}, {len(cfg.seeds)} seeds)")

    return holds_up


def benchmark_step(
    program: Program,
    lr_multiplier: float,
    cfg: BenchmarkSettings,
    tracker: Tracker | None = None,
    progress: Progress | None = None,
) -> BenchmarkResult:
    """The winner against Keras' AdamW and Lion on the target tasks, each contender's grid
    centred on the task's tuned AdamW rate times its own scale (see BenchmarkSettings).
    ``progress`` counts training runs (one per contender, rate and seed)."""
    rows, best_curves = [], {}
    for name in cfg.tasks:
        task = make_task(name, scale=cfg.scale)
        contenders = [
            program_contender(DISCOVERED, program, task.learning_rate * lr_multiplier),
            keras_contender("adamw", task.learning_rate * cfg.adamw_lr_scale),
            keras_contender("lion", task.learning_rate * cfg.lion_lr_scale),
        ]
        contenders = [replace(c, make=counted(c.make, progress)) for c in contenders]
        part = run_benchmark(contenders, [task], lr_multipliers=cfg.lr_multipliers,
                             seeds=cfg.seeds)
        rows += part.rows
        best_curves |= part.curves
    result = BenchmarkResult(tuple(rows), best_curves)
    if progress is not None:
        progress.finish()  # a program that ignores lr trains once per seed, not per rate
    if tracker is not None:
        tracker.log_table(result.table(), "benchmark")
        tracker.log_text(result.format(), "benchmark.txt")
        from pipeline import plots

        curves: dict = {}
        for (opt, task), curve in result.curves.items():
            curves.setdefault(task, {})[opt] = curve
        tracker.log_figure(plots.loss_curves(curves), "plots/benchmark_loss_curves.png")
    return result


def benchmark_progress(cfg: BenchmarkSettings) -> Progress:
    """The benchmark's progress bar: one step per training run as it starts (the initial
    grids; a grid that grows at an edge adds runs)."""
    runs = len(cfg.tasks) * BENCHMARK_CONTENDERS * len(cfg.lr_multipliers) * len(cfg.seeds)
    return Progress(runs, label="benchmark", unit="runs")


def register_step(
    program: Program, cfg: RegisterSettings, tracker: Tracker, *, description: str = "",
    tags: dict[str, str] | None = None,
) -> object:
    """Log the program as an MLflow model and point the alias at it; the version gets the
    model card (``description``, ``tags``: :mod:`pipeline.report`)."""
    return tracker.register(program, name=cfg.model_name, alias=cfg.alias,
                            description=description, tags=tags,
                            model_description=REGISTERED_MODEL_DESCRIPTION)
