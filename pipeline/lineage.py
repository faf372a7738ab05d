"""A winner's lineage: its ancestor chain from the seed, with the diff each mutation made,
from the candidate records (``parent_hash -> structural_hash``), and its Markdown form.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from pipeline.plots import LineageStep
from pipeline.records import CandidateRecord

__all__ = ["lineage", "lineage_markdown"]


def lineage(records: Iterable[CandidateRecord], winner_hash: str) -> list[LineageStep]:
    """The winner's ancestor chain, seed first, following ``parent_hash -> structural_hash``.

    For each hash the first record carrying it is used (later ones are cache hits of it).
    The chain stops at a record without a parent, at a parent never logged, or at a cycle.
    """
    if not isinstance(winner_hash, str):
        raise TypeError(
            "Argument `winner_hash` must be a structural hash (a str, e.g. "
            "`program.structural_hash()`). "
            f"Received: winner_hash={winner_hash!r} of type {type(winner_hash).__name__}"
        )
    first: dict[str, CandidateRecord] = {}
    for r in records:
        first.setdefault(r.structural_hash, r)
    chain: list[CandidateRecord] = []
    seen: set[str] = set()
    h = winner_hash
    while h and h in first and h not in seen:
        seen.add(h)
        chain.append(first[h])
        h = first[h].parent_hash
    chain.reverse()
    steps, previous = [], None
    for r in chain:
        diff = ""
        if previous is not None:
            diff = "".join(
                difflib.unified_diff(
                    previous.program.splitlines(keepends=True),
                    r.program.splitlines(keepends=True),
                    "parent",
                    "child",
                    n=1,
                )
            )
        steps.append(
            LineageStep(r.structural_hash, r.mutation, r.generation, r.fitness, r.program, diff)
        )
        previous = r
    return steps


def lineage_markdown(winner_hash: str, steps: Sequence[LineageStep]) -> str:
    """The chain as Markdown: per step its mutation, generation, fitness, program and diff."""
    parts = [f"# lineage of {winner_hash}\n"]
    for k, s in enumerate(steps):
        parts.append(
            f"\n## {k}. {s.mutation} (generation {s.generation}, fitness {s.fitness:.6g})\n"
            f"\n```\n{s.program}```\n"
        )
        if s.diff:
            parts.append(f"\n```diff\n{s.diff}```\n")
    return "".join(parts)
