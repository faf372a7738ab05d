"""Crash and resume: the append-only checkpoint, and a killed `lionforge evolve` that resumes."""

from __future__ import annotations

import json
import math

import pytest

from pipeline.evolve import EvolutionConfig, Scored, Search, evaluate_each, records_path
from pipeline.numpy_tasks import Quadratic

CONFIG = EvolutionConfig(population_size=16, tournament_size=4, batch_size=8,
                         restart_patience=40, fec_cache_size=20)
TASK = evaluate_each(Quadratic(steps=40))


def _state(search: Search) -> tuple:
    return (
        [r.to_dict() for r in search.records],
        search.population,
        search.best,
        search.rng.bit_generator.state,
        list(search.structural.entries.items()),
        (search.structural.lookups, search.structural.hits),
        list(search.fec.entries.items()),
        (search.fec.lookups, search.fec.hits),
        search.stats.rejections,
    )


# ---- the checkpoint format ---------------------------------------------------------------------


def test_a_checkpoint_holds_no_history_only_the_count_of_appended_records(tmp_path):
    path = tmp_path / "s.json"
    search = Search(CONFIG, rng_seed=1, checkpoint=path)
    search.run(TASK, 41)
    small = path.stat().st_size
    search.run(TASK, 201)
    state = json.loads(path.read_text())
    assert state["records"] == 201 and "fec" not in state and "structural" not in state
    assert path.stat().st_size < 1.2 * small  # the checkpoint does not grow with the history
    lines = records_path(path).read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(201))


def test_record_lines_written_after_the_last_checkpoint_are_dropped_on_resume(tmp_path):
    """A crash between appending a batch's records and replacing the checkpoint."""
    path = tmp_path / "s.json"
    Search(CONFIG, rng_seed=2, checkpoint=path).run(TASK, 57)
    covered = records_path(path).read_bytes()
    ahead = Search(CONFIG, rng_seed=2, checkpoint=tmp_path / "ahead.json")
    ahead.run(TASK, 65)
    extra = records_path(tmp_path / "ahead.json").read_bytes()[len(covered):]
    assert extra.count(b"\n") == 8
    records_path(path).write_bytes(covered + extra + b'{"index": 65, "prog')  # torn last line

    resumed = Search.resume(path)
    assert len(resumed.records) == 57
    assert records_path(path).read_bytes() == covered  # cut back to what the checkpoint covers
    resumed.run(TASK, 200)
    full = Search(CONFIG, rng_seed=2)
    full.run(TASK, 200)
    assert _state(resumed) == _state(full)
    lines = records_path(path).read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(200))


def test_resume_rebuilds_both_caches_exactly_including_lru_order_and_counters(tmp_path):
    path = tmp_path / "s.json"
    full = Search(CONFIG, rng_seed=4)
    full.run(TASK, 300)
    for stop in (9, 97, 161):
        part = Search(CONFIG, rng_seed=4, checkpoint=path)
        part.run(TASK, stop)
        resumed = Search.resume(path)
        assert _state(resumed) == _state(part)
        resumed.run(TASK, 300)
        assert _state(resumed) == _state(full)
    assert len(full.fec.entries) == 20  # the LRU did evict


def test_a_records_file_shorter_than_its_checkpoint_is_refused(tmp_path):
    path = tmp_path / "s.json"
    Search(CONFIG, rng_seed=0, checkpoint=path).run(TASK, 33)
    lines = records_path(path).read_text().splitlines(keepends=True)
    records_path(path).write_text("".join(lines[:-1]))
    with pytest.raises(ValueError, match="fewer than the 33 records"):
        Search.resume(path)


def test_an_evaluator_rejection_is_recorded_counted_and_never_cached(tmp_path):
    path = tmp_path / "s.json"
    search = Search(CONFIG, rng_seed=0, checkpoint=path)
    search.run(TASK, 9)
    programs = search.propose()
    records = search.tell([Scored(rejection="timeout") for _ in programs])
    timed_out = [r for r in records if r.rejection == "timeout"]
    # the evaluated ones, and their in-batch duplicates, which share their verdict
    assert len([r for r in timed_out if not r.cache_hit]) == len(programs) > 0
    assert all(r.fitness == -math.inf for r in timed_out)
    assert search.stats.rejections["timeout"] == len(timed_out)
    for r in timed_out:
        assert r.structural_hash not in search.structural.entries
        assert r.fingerprint not in search.fec.entries
    assert _state(Search.resume(path)) == _state(search)
