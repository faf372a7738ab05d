"""What a run dir holds, and the checks that keep one search per run dir.

A run dir (``--run_dir``) is where a search lives between invocations: its checkpoint
(``search.json``, with the records file beside it), the proxy's calibration, the settings
it was started with, its summary, and which MLflow runs it logs to. Resuming a run dir with
other settings is refused (:func:`check_run_dir`), naming what differs. Every file here is
written atomically (:func:`pipeline.store.write_json`), so an interrupted write leaves the
old file whole.

Nothing here imports TensorFlow or MLflow: the CLI checks a run dir before it loads either.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.store import write_json

if TYPE_CHECKING:
    from flows.settings import EvolveSettings, Experiment
    from pipeline.tracking import Tracker

__all__ = ["CALIBRATION_FILE", "RunDirMismatch", "SEARCH_FILE", "SETTINGS_FILE", "SUMMARY_FILE",
           "TRACKING_FILE", "check_run_dir", "open_run_dir", "remember_run", "remembered_run",
           "search_identity"]

SEARCH_FILE = "search.json"
CALIBRATION_FILE = "calibration.json"
SETTINGS_FILE = "settings.json"  # what the search in a run dir was started with
SUMMARY_FILE = "summary.json"
TRACKING_FILE = "tracking.json"


# ---- which MLflow runs a run dir logs to ------------------------------------------------------


def remembered_run(run_dir: str | os.PathLike, tracker: Tracker, key: str) -> str | None:
    """The MLflow run id stored under ``key`` in ``run_dir/tracking.json`` when it belongs
    to this tracker's store and experiment (so a resumed search logs to the same run)."""
    path = Path(run_dir) / TRACKING_FILE
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    if d.get("tracking_uri") != tracker.tracking_uri:
        return None
    if d.get("experiment_id") != tracker.experiment_id:
        return None
    return d.get("runs", {}).get(key)


def remember_run(run_dir: str | os.PathLike, tracker: Tracker, key: str, run_id: str) -> None:
    """Store ``run_id`` under ``key`` in ``run_dir/tracking.json`` (atomically)."""
    path = Path(run_dir) / TRACKING_FILE
    d = json.loads(path.read_text()) if path.exists() else {}
    if (d.get("tracking_uri"), d.get("experiment_id")) != (tracker.tracking_uri,
                                                           tracker.experiment_id):
        d = {"tracking_uri": tracker.tracking_uri, "experiment_id": tracker.experiment_id}
    d.setdefault("runs", {})[key] = run_id
    write_json(path, d)


class RunDirMismatch(ValueError):
    """A run dir holds a search started with other settings: resuming it would mix them."""


def search_identity(cfg: EvolveSettings, exp: Experiment) -> dict[str, object]:
    """The settings that make a search what it is, flat (``binding -> value``): resuming a run
    dir with any of them changed would mix two experiments. The budget, the time limit and
    how evaluation is chunked may change (a longer run of the same search)."""
    h = cfg.hurdles
    flat: dict[str, object] = {"Experiment.seed": exp.seed,
                               "EvolveSettings.seed_program": cfg.seed_program}

    def add(prefix: str, d: dict) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                add(f"{prefix}.{k}", v)
            else:
                flat[f"{prefix}.{k}"] = v

    add("Proxy", {k: v for k, v in cfg.proxy.to_json().items() if k != "calibration"})
    add("Hurdles", {"points": list(h.points), "loss_cap": h.loss_cap, "window": h.window,
                    "baseline_margin": h.baseline_margin,
                    "baseline": h.baseline.structural_hash()[:16]})
    add("EvolutionConfig", cfg.evolution.to_json())
    return json.loads(json.dumps(flat))  # lists, not tuples: as read back from the file


def open_run_dir(cfg: EvolveSettings, exp: Experiment, run_dir: str | os.PathLike) -> None:
    """:func:`check_run_dir`, then a new run dir records the settings of its search."""
    run_dir = Path(run_dir)
    check_run_dir(cfg, exp, run_dir)
    if not (run_dir / SEARCH_FILE).exists():
        write_json(run_dir / SETTINGS_FILE, search_identity(cfg, exp))


def check_run_dir(cfg: EvolveSettings, exp: Experiment, run_dir: str | os.PathLike) -> None:
    """Refuse a run dir whose search was started with other settings (naming them), or by a
    lionforge that did not record them. Reads only: nothing is created or changed."""
    run_dir = Path(run_dir)
    path = run_dir / SETTINGS_FILE
    mine = search_identity(cfg, exp)
    if not (run_dir / SEARCH_FILE).exists():
        return
    fresh = f"remove {run_dir} or pass another --run_dir to start a new search"
    if not path.exists():
        raise RunDirMismatch(f"{run_dir} holds a search that recorded no settings (an older "
                             f"lionforge): {fresh}")
    theirs = json.loads(path.read_text())
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if differ:
        shown = ", ".join(f"{k} ({theirs.get(k)!r} there, {mine.get(k)!r} now)"
                          for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise RunDirMismatch(f"{run_dir} holds a search started with other settings: "
                             f"{shown}{more}; {fresh}")
