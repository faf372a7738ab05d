"""Where a search is saved: a small checkpoint file and an append-only records file.

``search.json`` holds the state (population, RNG, counters, and how many records it covers),
replaced atomically; ``search.records.jsonl`` (:func:`records_path`) holds one JSON line per
candidate: its :class:`~pipeline.records.CandidateRecord` and the screen's notes on it
(``pipeline.screen``). :meth:`Store.save` appends the new lines first (fsync'd), then
replaces the checkpoint, so a save costs O(state + new records) and a crash at any point
leaves a checkpoint that :meth:`Store.load` reads: record lines beyond its count are cut off.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from pipeline.fitness import from_json as fitness_from_json
from pipeline.records import CandidateRecord

__all__ = ["Store", "records_path", "write_json"]

VERSION = 2  # of the checkpoint format
_RECORD_FIELDS = tuple(f.name for f in fields(CandidateRecord))


def records_path(checkpoint: str | os.PathLike) -> Path:
    """The records file of a checkpoint: ``search.json`` -> ``search.records.jsonl``."""
    p = Path(checkpoint)
    return p.with_name(p.stem + ".records.jsonl")


def write_json(path: str | os.PathLike, obj: object, *, indent: int | None = 2,
               allow_nan: bool = True) -> None:
    """Write ``obj`` as JSON to ``path`` atomically: a temp file beside it, fsync'd, then
    ``os.replace``'d onto it (parent folders are created). A crash leaves the old file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, allow_nan=allow_nan)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Store:
    """The checkpoint at ``path`` and its records file.

    The store remembers how many record lines it has written to its records file, so each
    :meth:`save` appends only the new ones (a store that has written none rewrites the file).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records_path = records_path(self.path)
        self._written = 0  # record lines known to be in the records file

    def save(self, state: dict, records: Sequence[CandidateRecord],
             notes: Sequence[dict]) -> None:
        """Append the records (each with its notes) not written yet, fsync, then write
        ``state`` (with the format's version) onto the checkpoint atomically
        (:func:`write_json`)."""
        with open(self.records_path, "a" if self._written else "w", encoding="utf-8") as f:
            f.writelines(
                json.dumps({**records[k].to_dict(), **notes[k]}, allow_nan=False) + "\n"
                for k in range(self._written, len(records))
            )
            f.flush()
            os.fsync(f.fileno())
        self._written = len(records)
        write_json(self.path, {"version": VERSION, **state}, indent=None, allow_nan=False)

    def load(self) -> tuple[dict, list[CandidateRecord], list[dict]]:
        """The checkpoint's state, and the records it covers with their notes (the keys of
        a line that are not record fields). Lines beyond them are cut off the file, which
        this store then appends to."""
        with open(self.path, encoding="utf-8") as f:
            state = json.load(f)
        if state.get("version") != VERSION:
            raise ValueError(f"checkpoint version {state.get('version')!r} is not {VERSION}")
        rows = _read_lines(self.records_path, state["records"])
        records = [
            CandidateRecord(**{k: row[k] for k in _RECORD_FIELDS if k in row}
                            | {"fitness": fitness_from_json(row["fitness"]),
                               "lr_multipliers": tuple(row.get("lr_multipliers", ()))})
            for row in rows
        ]
        notes = [{k: v for k, v in row.items() if k not in _RECORD_FIELDS} for row in rows]
        self._written = len(records)
        return state, records, notes


def _read_lines(path: Path, count: int) -> list[dict]:
    """The first ``count`` lines of a records file, parsed; lines beyond them (written after
    the checkpoint was last replaced) are cut off the file."""
    rows: list[dict] = []
    if count == 0 and not path.exists():
        return rows
    with open(path, "rb+") as f:
        for _ in range(count):
            line = f.readline()
            if not line.endswith(b"\n"):
                raise ValueError(f"{path} holds fewer than the {count} records its checkpoint "
                                 "covers")
            rows.append(json.loads(line))
        if f.read(1):
            f.truncate(f.tell() - 1)
            f.flush()
            os.fsync(f.fileno())
    return rows
