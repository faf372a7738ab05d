"""What a discover run reports, in the words a person reads in the MLflow UI and registry.

One place builds the headline metrics of a discover run (the numbers two runs are compared
by), its markdown description, and the registered version's model card, from the funnel and
benchmark results. Nothing here talks to MLflow: :mod:`pipeline.tracking` writes it.
"""

from __future__ import annotations

import math
import re

from pipeline.benchmark import DISCOVERED, KERAS_PREFIX, BenchmarkResult
from pipeline.funnel import FunnelResult
from pipeline.program import IGNORES_LR, Program

__all__ = [
    "REGISTERED_MODEL_DESCRIPTION",
    "benchmark_markdown",
    "headline_metrics",
    "load_snippet",
    "run_description",
    "version_description",
    "version_tags",
]

REGISTERED_MODEL_DESCRIPTION = (
    "Optimizer update rules found by lionforge's program search (evolution from AdamW, a "
    "funnel of larger tasks, simplification), each version a rule written as a lionforge "
    "program. A version's description holds its rule, its benchmark against Keras' AdamW and "
    "Lion, and how to load it; its tags hold the figures (proxy fitness, funnel metric, "
    "benchmark deltas vs AdamW, reads_lr, the gin config and the git commit)."
)
_NAME = re.compile(r"[^0-9A-Za-z_]+")
ADAMW = f"{KERAS_PREFIX}adamw"


def _key(*parts: str) -> str:
    """An MLflow metric or tag name from free text: letters, digits and ``_`` only."""
    return ".".join(_NAME.sub("_", p).strip("_") for p in parts)


def _winner_row(funnel: FunnelResult, stage: str):
    if funnel.winner is None:
        return None
    h = funnel.winner.structural_hash()
    return next((r for r in funnel.rows if r.stage == stage and not r.is_baseline
                 and r.structural_hash == h), None)


def _last_stage(funnel: FunnelResult) -> str | None:
    return funnel.rows[-1].stage if funnel.rows else None


def _bench_means(bench: BenchmarkResult) -> dict[str, dict[str, float]]:
    """task -> optimizer -> best mean over the grid."""
    out: dict[str, dict[str, float]] = {}
    for r in bench.rows:
        out.setdefault(r.task, {})[r.optimizer] = r.mean
    return out


def headline_metrics(best_proxy: float | None, funnel: FunnelResult,
                     bench: BenchmarkResult) -> dict[str, float]:
    """The numbers a discover run is compared by (only finite ones: MLflow charts no -inf).

    ``best_proxy_fitness``; ``funnel_<stage>_winner`` and ``funnel_<stage>_adamw`` on the
    funnel's last stage; per benchmark task ``bench_<task>_<optimizer>`` (each contender's
    best mean over its grid) and ``bench_<task>_delta_vs_adamw`` (the benchmarked program
    minus AdamW, higher is better).
    """
    out: dict[str, float] = {}
    if best_proxy is not None:
        out["best_proxy_fitness"] = best_proxy
    last = _last_stage(funnel)
    if last is not None:
        row = _winner_row(funnel, last)
        if row is not None:
            out[_key(f"funnel_{last}_winner")] = row.mean
        base = next((r for r in funnel.rows if r.stage == last and r.is_baseline), None)
        if base is not None:
            out[_key(f"funnel_{last}_adamw")] = base.mean
    for task, means in _bench_means(bench).items():
        for opt, mean in means.items():
            out[_key(f"bench_{task}_{opt}")] = mean
        if DISCOVERED in means and ADAMW in means:
            out[_key(f"bench_{task}_delta_vs_adamw")] = means[DISCOVERED] - means[ADAMW]
    return {k: float(v) for k, v in out.items() if math.isfinite(v)}


def benchmark_markdown(bench: BenchmarkResult) -> str:
    """The benchmark as a markdown table: per task each contender's best mean ± seed std and
    the learning rate it was best at (``*``: at the edge of the grid)."""
    opts = list(dict.fromkeys(r.optimizer for r in bench.rows))
    cells = {(r.task, r.optimizer): r for r in bench.rows}
    lines = ["| task | " + " | ".join(opts) + " |", "|---" * (len(opts) + 1) + "|"]
    for task in dict.fromkeys(r.task for r in bench.rows):
        row = [task]
        for opt in opts:
            r = cells.get((task, opt))
            if r is None:
                row.append("")
                continue
            lr = f"lr {r.best_lr:.2g}{'*' if r.at_grid_edge else ''}" if r.uses_lr else "lr ignored"
            row.append(f"{r.mean:.4f} ± {r.std:.4f} ({lr})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def load_snippet(model_uri: str) -> str:
    """Python that loads ``model_uri`` as a Keras optimizer."""
    return ("```python\nfrom pipeline import load_optimizer\n\n"
            f'optimizer = load_optimizer("{model_uri}", learning_rate=1e-3)\n'
            'model.compile(optimizer=optimizer, loss="mse")\n```')


def _lr_note(program: Program) -> str:
    if program.reads_lr:
        return ("The rule reads `lr`: `learning_rate=` and Keras schedules set its step size; "
                "tune it as you would AdamW's.")
    return f"**Warning:** {IGNORES_LR}."


def run_description(champion: Program, contender: Program, beat: bool, funnel: FunnelResult,
                    bench: BenchmarkResult, model_uri: str) -> str:
    """The discover run's description (markdown): the champion and why, the benchmark, the
    learning-rate note and how to load the registered model."""
    if beat:
        verdict = ("The funnel's winner beat AdamW on every stage, the last included: it is "
                   "the champion.")
    elif funnel.winner is None:
        verdict = ("No candidate beat AdamW on the funnel's first stage: the champion is AdamW "
                   "itself, and the benchmark below shows AdamW as `discovered`.")
    else:
        verdict = ("The funnel's winner did not beat AdamW on the last stage: the champion is "
                   "AdamW itself. The benchmark below shows the winner as `discovered`, so you "
                   "see how it did.")
    parts = ["## Champion", "", verdict, "", "```", champion.to_text().rstrip(), "```", "",
             _lr_note(champion), ""]
    if contender != champion:
        parts += ["Benchmarked funnel winner (simplified):", "", "```",
                  contender.to_text().rstrip(), "```", ""]
    parts += ["## Benchmark", "", "Best mean over each contender's learning-rate grid ± the "
              "seed std there (higher is better).", "", benchmark_markdown(bench), "",
              "## Funnel", "", "```", funnel.format(), "```", "",
              f"## Load it (`{model_uri}`)", "", load_snippet(model_uri), ""]
    return "\n".join(parts)


def version_description(program: Program, beat: bool, bench: BenchmarkResult,
                        model_uri: str) -> str:
    """A registered version's description: the rule, the lr note, its benchmark (when the
    benchmark measured this program) and how to load it."""
    parts = ["```", program.to_text().rstrip(), "```", "", _lr_note(program), ""]
    if beat:
        parts += ["Benchmark (best mean over each contender's grid ± seed std):", "",
                  benchmark_markdown(bench), ""]
    else:
        parts += ["AdamW registered as the champion: no discovered rule beat it on every "
                  "funnel stage (the run's description shows the winner's benchmark).", ""]
    parts += [load_snippet(model_uri)]
    return "\n".join(parts)


def version_tags(program: Program, beat: bool, funnel: FunnelResult, bench: BenchmarkResult,
                 best_proxy: float | None, config: str, commit: str) -> dict[str, str]:
    """A registered version's tags: ``champion``, ``reads_lr``, ``config``, ``git_commit``,
    ``proxy_fitness`` and ``funnel_<stage>`` (the champion's last-stage mean) and, when the
    benchmark measured the champion, ``bench_delta_vs_adamw.<task>``."""
    tags: dict[str, str] = {"champion": "discovered" if beat else "baseline",
                            "reads_lr": str(program.reads_lr), "config": config}
    if commit:
        tags["git_commit"] = commit
    last = _last_stage(funnel)
    if beat:
        if best_proxy is not None and math.isfinite(best_proxy):
            tags["proxy_fitness"] = f"{best_proxy:.6g}"
        row = _winner_row(funnel, last) if last is not None else None
        for task, means in _bench_means(bench).items():
            if DISCOVERED in means and ADAMW in means:
                delta = means[DISCOVERED] - means[ADAMW]
                tags[_key("bench_delta_vs_adamw", task)] = f"{delta:+.4g}"
    else:
        row = next((r for r in funnel.rows if r.stage == last and r.is_baseline), None)
    if row is not None:
        tags[_key(f"funnel_{last}")] = f"{row.mean:.6g} ± {row.std:.2g}"
    return tags

