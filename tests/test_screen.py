"""The screen in front of the evaluator: hits settled, twins evaluated once, state restored."""

from __future__ import annotations

import math

import numpy as np

from pipeline import seeds
from pipeline.cache import DEFAULT_PROBE
from pipeline.mutate import MutationConfig, mutate
from pipeline.program import Program
from pipeline.records import CandidateRecord
from pipeline.screen import Screen, Verdict

G_LR = Program.parse("update = g * lr\n")
LR_G = Program.parse("update = lr * g\n")  # another dataflow, the same behaviour
G_LR_DEAD = Program.parse("x = sign(g)\nupdate = g * lr\n")  # G_LR's dataflow, dead code
DOUBLE = Program.parse("a = g * 2.0\nupdate = a * lr\n")


def _screen() -> Screen:
    return Screen(structural=True, fec_cache_size=100, probe=DEFAULT_PROBE)


def test_twins_in_a_batch_are_evaluated_once_and_share_the_result():
    screen = _screen()
    adamw = seeds.adamw()
    batch, to_evaluate = screen.screen([G_LR, G_LR_DEAD, LR_G, None, adamw])
    assert to_evaluate == [G_LR, adamw]
    assert [s.cache_hit for s in batch] == ["", "structural", "fec", "", ""]
    screen.settle(batch, [Verdict(0.5, "", (3.0,)), 0.25])
    assert [s.fitness for s in batch[:3]] == [0.5, 0.5, 0.5]
    assert batch[2].lr_multipliers == (3.0,) and batch[4].fitness == 0.25
    assert batch[3].fitness == -math.inf and not batch[3].cached


def test_a_later_batch_hits_the_caches_and_is_not_evaluated():
    screen = _screen()
    batch, to_evaluate = screen.screen([G_LR])
    screen.settle(batch, [1.5])
    batch, to_evaluate = screen.screen([G_LR_DEAD, LR_G, DOUBLE])
    assert to_evaluate == [DOUBLE]
    assert [s.cache_hit for s in batch] == ["structural", "fec", ""]
    assert batch[0].fitness == batch[1].fitness == 1.5


def test_a_verdict_that_gave_up_is_kept_out_of_the_caches():
    screen = _screen()
    batch, _ = screen.screen([G_LR])
    screen.settle(batch, [Verdict(rejection="timeout")])
    assert batch[0].rejection == "timeout" and batch[0].fitness == -math.inf
    assert not screen.structural.entries and not screen.fec.entries
    batch, to_evaluate = screen.screen([G_LR])
    assert to_evaluate == [G_LR]  # tried again


def test_a_screen_restored_from_its_notes_equals_the_one_that_wrote_them():
    rng = np.random.default_rng(0)
    small = Screen(structural=True, fec_cache_size=8, probe=DEFAULT_PROBE)  # the LRU evicts
    records: list[CandidateRecord] = []
    parents = [seeds.adamw(), seeds.lion()]
    for _ in range(12):
        programs = [mutate(parents[int(rng.integers(2))], rng, MutationConfig()).child
                    for _ in range(6)]
        batch, to_evaluate = small.screen(programs)
        small.settle(batch, [float(rng.normal()) for _ in to_evaluate])
        records += [
            CandidateRecord(len(records), "", s.program.structural_hash() if s.program else "",
                            s.fingerprint, "", "", 0, "proxy", s.fitness, s.cache_hit, s.rejection)
            for s in batch
        ]
    assert small.fec.hits > 0 and len(small.structural.entries) > len(small.fec) == 8
    back = Screen(structural=True, fec_cache_size=8, probe=DEFAULT_PROBE)
    back.restore(small.to_json(), records, small.notes)
    assert list(back.fec.entries.items()) == list(small.fec.entries.items())
    assert back.structural == small.structural and back.fec == small.fec
    assert back.notes == small.notes and back.batches == small.batches == 12
