"""Mutation: every child lies in the allowed set, and every required outcome eventually appears."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ops import OPS
from pipeline import seeds
from pipeline.abstract import Rejection, check_program
from pipeline.mutate import MutationConfig, MutationKind, mutate, random_program
from pipeline.program import Program
from pipeline.statement import STATE_SLOTS

PAPER_ADAMW = seeds.paper_adamw(lr_scale=1e-3)  # the paper's text: lr scaled by 1e-3

N = 600


def _literals(program):
    return [(i, j, a) for i, st in enumerate(program.statements)
            for j, a in enumerate(st.args) if isinstance(a, float)]


def _draws(parent, config, n=N, seed=0):
    rng = np.random.default_rng(seed)
    return [mutate(parent, rng, config) for _ in range(n)]


def test_mutation_never_changes_its_input():
    parent = PAPER_ADAMW
    text, statements, h = parent.to_text(), parent.statements, parent.structural_hash()
    _draws(parent, MutationConfig(), n=100)
    assert parent.to_text() == text and parent.statements == statements
    assert parent.structural_hash() == h


def test_same_generator_state_gives_the_same_children():
    a = [r.child.to_text() for r in _draws(PAPER_ADAMW, MutationConfig(), 50, seed=7)]
    b = [r.child.to_text() for r in _draws(PAPER_ADAMW, MutationConfig(), 50, seed=7)]
    c = [r.child.to_text() for r in _draws(PAPER_ADAMW, MutationConfig(), 50, seed=8)]
    assert a == b
    assert a != c


def test_every_child_is_valid_new_short_and_uses_only_allowed_slots():
    config = MutationConfig(max_len=12, n_slots=2)
    parent = PAPER_ADAMW  # the paper's 9-statement text
    rng = np.random.default_rng(1)
    gave_up = 0
    for _ in range(N):
        r = mutate(parent, rng, config)
        child = r.child
        if child is None:  # every redraw rejected: allowed, but rare, and says why
            assert r.rejection is not None and sum(r.rejections.values()) == 100
            gave_up += 1
            continue
        assert check_program(child, max_len=12, n_slots=2) is None
        assert child.structural_hash() != parent.structural_hash()
        assert len(child) <= 12
        assert set(child.slots) <= {"m", "v"}
        parent = child if rng.random() < 0.3 else parent  # wander a little
    assert gave_up < N // 20


def test_every_kind_appears_and_changes_the_length_as_it_should():
    parent = PAPER_ADAMW
    kinds = Counter()
    for r in _draws(parent, MutationConfig(tune_constant=0.1)):
        kinds[r.kind] += 1
        delta = len(r.child) - len(parent)
        match r.kind:
            case MutationKind.INSERT:
                assert delta == 1
            case MutationKind.DELETE:
                assert delta == -1
            case MutationKind.CHANGE_ARG | MutationKind.REPLACE | MutationKind.TUNE_CONSTANT:
                assert delta == 0
    assert set(kinds) == set(MutationKind)


def test_zero_weight_kinds_never_appear():
    config = MutationConfig(insert=1.0, delete=0.0, change_arg=0.0, replace=0.0)
    assert {r.kind for r in _draws(PAPER_ADAMW, config, 100)} == {MutationKind.INSERT}


def test_change_arg_yields_new_constants_scaled_constants_and_variables():
    parent = PAPER_ADAMW
    config = MutationConfig(insert=0, delete=0, replace=0, change_arg=1.0)
    old = {(i, j): a for i, j, a in _literals(parent)}
    new_literal = scaled = to_variable = 0
    for r in _draws(parent, config):
        diff = [(i, j) for i, st in enumerate(r.child.statements)
                for j, a in enumerate(st.args) if a != parent.statements[i].args[j]]
        assert len(diff) == 1  # exactly one argument changed
        i, j = diff[0]
        a = r.child.statements[i].args[j]
        if isinstance(a, str):
            to_variable += 1
        elif (i, j) in old:  # scaled by 2**a, or redrawn ~ N(0, 1)
            scaled += 1
        else:
            new_literal += 1
    assert new_literal and scaled and to_variable


def test_inserted_statements_eventually_use_every_op():
    config = MutationConfig(insert=1.0, delete=0, change_arg=0, replace=0, max_len=20)
    parent = seeds.lion()
    ops = Counter()
    for r in _draws(parent, config, 1500):
        ops.update(st.op for st in r.child.statements)
    assert set(ops) == set(OPS)


def test_restricting_ops_restricts_new_statements():
    allowed = ("add", "mul", "sign")
    # a two-statement parent: most draws are redrawn (unchanged, no update, ignores lr, ...)
    config = MutationConfig(ops=allowed, insert=1.0, replace=1.0, delete=0, change_arg=0,
                            max_redraws=400)
    parent = seeds.signsgd()
    for r in _draws(parent, config, 200):
        assert {st.op for st in r.child.statements} <= set(allowed)


@pytest.mark.parametrize("n_slots", [0, 1, 4])
def test_n_slots_bounds_and_eventually_reaches_the_slots_used(n_slots):
    config = MutationConfig(n_slots=n_slots, insert=1.0, replace=0.5, delete=0, change_arg=0.5,
                            max_redraws=400)
    used = set()
    children = [r.child for r in _draws(seeds.signsgd(), config, 400) if r.child is not None]
    assert len(children) >= 390  # a parent of two statements: a rare draw finds no child
    for child in children:
        assert len(child.slots) <= n_slots
        used |= set(child.slots)
    assert used == set(STATE_SLOTS[:n_slots])


def test_tune_constant_changes_one_constant_by_a_power_of_two_and_nothing_else():
    parent = PAPER_ADAMW
    config = MutationConfig(insert=0, delete=0, change_arg=0, replace=0, tune_constant=1.0)
    positions = set()
    for r in _draws(parent, config, 300):
        changed = [(p, c) for p, c in zip(_literals(parent), _literals(r.child), strict=True)
                   if p != c]
        assert len(changed) == 1
        (i, j, a), (i2, j2, b) = changed[0]
        assert (i, j) == (i2, j2) and abs(np.log2(b / a)) < 6
        structure = [(st.target, st.op, [x for x in st.args if isinstance(x, str)])
                     for st in r.child.statements]
        assert structure == [(st.target, st.op, [x for x in st.args if isinstance(x, str)])
                             for st in parent.statements]
        positions.add((i, j))
    assert positions == {(i, j) for i, j, _ in _literals(parent)}


def test_redraws_are_bounded_and_counted_when_no_child_is_possible():
    parent = Program.parse("update = g * lr")
    config = MutationConfig(insert=0, delete=1.0, change_arg=0, replace=0, max_redraws=17)
    r = mutate(parent, np.random.default_rng(0), config)
    assert r.child is None
    assert r.rejection is Rejection.NO_UPDATE
    assert r.rejections == Counter({Rejection.NO_UPDATE: 17})


def test_rejections_are_counted_per_reason_and_exclude_the_accepted_draw():
    rng = np.random.default_rng(3)
    total = Counter()
    for _ in range(200):
        r = mutate(PAPER_ADAMW, rng, MutationConfig())
        assert r.rejection is None
        total.update(r.rejections)
    # dead-code edits and broken reads are the common redraw reasons
    assert total[Rejection.UNCHANGED] > 0 and total[Rejection.UNDEFINED_READ] > 0
    assert all(isinstance(k, Rejection) for k in total)


def test_random_programs_are_valid_and_end_by_assigning_update():
    rng = np.random.default_rng(0)
    config = MutationConfig(max_redraws=200)  # one statement that reads g and lr is rare
    for length in (1, 5, 12):
        for _ in range(30):
            program, statements, reason, _ = random_program(rng, length, config)
            assert program is not None and reason is None
            assert len(program) == length and statements[-1].target == "update"
            assert check_program(program, n_slots=2) is None


@pytest.mark.parametrize(
    "kwargs,word",
    [({"n_slots": 5}, "n_slots"), ({"n_slots": -1}, "n_slots"), ({"max_len": 0}, "max_len"),
     ({"insert": -1.0}, "weights"), ({"insert": 0, "delete": 0, "change_arg": 0, "replace": 0},
                                     "weight"), ({"ops": ("nope",)}, "nope")],
)
def test_config_rejects_bad_values_and_names_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        MutationConfig(**kwargs)
