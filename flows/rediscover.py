"""The rediscovery experiment as plain functions: one row per seeded search, and the table.

``lionforge rediscover --seeds 0,1,2,3,4`` runs an independent ``discover`` per seed (each
resumable in ``RUN_ROOT/seed_N``, each an MLflow run nested under one ``rediscover`` run),
classifies each winner by behaviour (:mod:`pipeline.classify`) and prints one row per seed,
then ``rediscovered sign-momentum in k of N seeds``. A finished seed's row is kept in
``RUN_ROOT/seed_N/rediscover.json``, so an interrupted experiment resumes without re-running it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.classify import RuleClass, classify
from pipeline.program import Program
from pipeline.store import write_json

__all__ = ["ROW_FILE", "format_table", "parse_seeds", "read_row", "row_of", "seed_dir",
           "write_row"]

ROW_FILE = "rediscover.json"
TARGET = RuleClass.SIGN_MOMENTUM


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``; an empty, malformed or repeated list is a ValueError."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or not all(p.lstrip("-").isdigit() for p in parts):
        raise ValueError(f"--seeds must be comma-separated integers like 0,1,2. Received: {text!r}")
    seeds = tuple(int(p) for p in parts)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds names a seed twice. Received: {text!r}")
    return seeds


def seed_dir(root: str | os.PathLike, seed: int) -> Path:
    return Path(root) / f"seed_{seed}"


def row_of(seed: int, out: dict, cpu_s: float, wall_s: float) -> dict:
    """One seed's row from its ``discover`` summary: the rule (the funnel's simplified winner,
    or the search's best when nothing passed the funnel), its class, and how it did against
    AdamW and Lion on the benchmark (tasks where its best-of-grid mean is higher)."""
    rule = out["winner"] or out["evolve"]["best_program"]
    by = {(r["optimizer"], r["task"]): r["mean"] for r in out["benchmark_table"]}
    tasks = sorted({task for _, task in by})

    def wins(other: str) -> int:
        return sum(by[("discovered", t)] > by[(other, t)] for t in tasks)

    return {
        "seed": seed,
        "rule": rule,
        "class": classify(Program.parse(rule)).value,
        "from_funnel": out["winner"] is not None,
        "beats_adamw": f"{wins('keras_adamw')}/{len(tasks)}",
        "beats_lion": f"{wins('keras_lion')}/{len(tasks)}",
        "cpu_minutes": cpu_s / 60,
        "wall_minutes": wall_s / 60,
        "run_id": out["run_id"],
    }


def write_row(root: str | os.PathLike, row: dict) -> None:
    write_json(seed_dir(root, row["seed"]) / ROW_FILE, row)


def read_row(root: str | os.PathLike, seed: int) -> dict | None:
    path = seed_dir(root, seed) / ROW_FILE
    return json.loads(path.read_text()) if path.exists() else None


def format_table(rows: Sequence[dict]) -> str:
    """The rows as text; the last line counts the seeds whose rule is sign-momentum."""
    lines = [f"{'seed':>4}  {'class':<13} {'vs AdamW':>8} {'vs Lion':>8} {'CPU min':>8}  rule"]
    for r in rows:
        rule = "; ".join(r["rule"].strip().splitlines())
        lines.append(f"{r['seed']:>4}  {r['class']:<13} {r['beats_adamw']:>8} "
                     f"{r['beats_lion']:>8} {r['cpu_minutes']:>8.1f}  {rule}")
    k = sum(r["class"] == TARGET.value for r in rows)
    lines.append("(vs AdamW / vs Lion: benchmark tasks where the rule's best-of-grid mean "
                 "is higher)")
    lines.append(f"rediscovered {TARGET.value} in {k} of {len(rows)} seeds")
    return "\n".join(lines)
