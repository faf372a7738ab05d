"""Interval analysis: fast paths are taken where a guard cannot fire, and change nothing."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import Program, numpy_step, seeds
from pipeline.mutate import MutationConfig, random_program
from pipeline.ranges import argument_intervals, fast_statements

PAPER_ADAMW = seeds.paper_adamw(lr_scale=1e-3)  # the paper's text: lr scaled by 1e-3


def test_adamw_divides_unguarded_by_a_denominator_bounded_away_from_zero():
    p = seeds.adamw()
    fast = {p.statements[i].to_text() for i in fast_statements(p)}
    assert fast == {"u = m / den"}


def test_guards_stay_where_a_denominator_can_be_zero():
    p = PAPER_ADAMW  # update = m / sqrt_v: sqrt_v is 0 at step 1
    assert fast_statements(p) == frozenset()
    q = Program.parse("s = sqrt(g)\nu = g / s\nupdate = u * lr")
    assert fast_statements(q) == frozenset()


def test_state_slots_are_assumed_to_hold_anything():
    p = Program.parse("v = square(g)\nx = sqrt(v)\nupdate = x * lr")
    assert 1 in fast_statements(p)  # v was just written as a square: >= 0
    q = Program.parse("x = sqrt(v)\nupdate = x * lr\nv = square(g)")
    assert fast_statements(q) == frozenset()  # v read before it is written: unknown


def test_an_optimizer_owning_its_state_may_rely_on_invariants_reached_from_zero():
    adamw = seeds.adamw()
    fast = {adamw.statements[i].to_text() for i in fast_statements(adamw, reachable=True)}
    assert fast == {"sv = sqrt(v)", "u = m / den"}  # v = EMA of g^2 stays >= 0
    paper = PAPER_ADAMW
    fast = {paper.statements[i].to_text() for i in fast_statements(paper, reachable=True)}
    assert fast == {"sqrt_v = sqrt(v)"}  # sqrt_v is 0 at step 1: the division stays guarded
    drifting = Program.parse("x = sqrt(m)\nupdate = x * lr\nm = m - g")
    assert fast_statements(drifting, reachable=True) == frozenset()  # m can go negative


def test_intervals_of_literals_and_t():
    p = Program.parse("a = power(0.9, t)\nb = 1.0 - a\nupdate = b * lr")
    reads = argument_intervals(p)
    assert reads[0][0] == (0.9, 0.9) and reads[0][1][0] == 1.0


FAST_PATH_PROGRAMS = [
    "q = square(m)\nd = q + 0.5\nu = g / d\nupdate = u * lr\nm = interp(g, m, 0.9)",
    "q = square(v)\nr = sqrt(q)\nupdate = r * lr\nv = v - g",
    "q = abs(m)\nq = q + 1e-3\nl = log(q)\nupdate = l * g\nm = m + g",
    "q = square(g)\nl = log1p(q)\nupdate = l * lr",
    seeds.adamw().to_text(),
]


def _check_same(program: Program, rng: np.random.Generator) -> None:
    shape = (5, 3)
    state = {s: (rng.normal(size=shape) * 10).astype(np.float32) for s in program.slots}
    w = rng.normal(size=shape).astype(np.float32)
    g = rng.normal(size=shape).astype(np.float32)
    fast = numpy_step(program, w, g, state, 0.01, 3)
    slow = numpy_step(program, w, g, state, 0.01, 3, fast=False)
    np.testing.assert_array_equal(fast[0], slow[0])
    for s in fast[1]:
        np.testing.assert_array_equal(fast[1][s], slow[1][s])


@pytest.mark.parametrize("text", FAST_PATH_PROGRAMS)
def test_fast_paths_are_taken_and_change_nothing_for_any_state(text):
    program = Program.parse(text)
    assert fast_statements(program), "the program should exercise a fast path"
    for seed in range(5):
        _check_same(program, np.random.default_rng(seed))


def _run_from_zero(program: Program, fast: bool, reachable: bool, seed: int, steps: int = 8):
    from pipeline.execute import NUMPY, run_step

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    state: dict = {}
    updates = []
    for t in range(1, steps + 1):
        g = (rng.normal(size=(4, 3)) * 10).astype(np.float32)
        update, state = run_step(program, NUMPY, w, g, state, np.float32(0.01), np.float32(t),
                                 fast=fast, reachable_state=reachable)
        updates.append(update)
        w = w - update
    return updates, state


@pytest.mark.parametrize(
    "text", FAST_PATH_PROGRAMS + [PAPER_ADAMW.to_text(), seeds.rmsprop().to_text()]
)
def test_reachable_fast_paths_change_nothing_on_reachable_states(text):
    program = Program.parse(text)
    fast_updates, fast_state = _run_from_zero(program, True, True, seed=1)
    slow_updates, slow_state = _run_from_zero(program, False, False, seed=1)
    for a, b in zip(fast_updates, slow_updates, strict=True):
        np.testing.assert_array_equal(a, b)
    for s in fast_state:
        np.testing.assert_array_equal(fast_state[s], slow_state[s])


@pytest.mark.parametrize("seed", range(20))
def test_random_programs_run_from_zero_agree_in_reachable_mode(seed):
    rng = np.random.default_rng(100 + seed)
    program, *_ = random_program(rng, int(rng.integers(4, 14)), MutationConfig(n_slots=4))
    assert program is not None
    fast_updates, _ = _run_from_zero(program, True, True, seed=seed)
    slow_updates, _ = _run_from_zero(program, False, False, seed=seed)
    for a, b in zip(fast_updates, slow_updates, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", range(30))
def test_random_programs_agree_with_and_without_fast_paths(seed):
    """Random programs, random (also negative) state: with and without fast paths agree."""
    rng = np.random.default_rng(seed)
    program, *_ = random_program(rng, int(rng.integers(4, 14)), MutationConfig(n_slots=4))
    assert program is not None
    _check_same(program, rng)
