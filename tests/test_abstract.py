"""Abstract execution: the table of invalid programs and their reasons, and its soundness."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from pipeline import seeds
from pipeline.abstract import Rejection, check, check_program
from pipeline.execute import numpy_step
from pipeline.mutate import MutationConfig, mutate, random_statement
from pipeline.program import Program
from pipeline.statement import (
    INPUTS,
    STATE_SLOTS,
    Fault,
    ProgramError,
    Statement,
    find_problem,
)


def S(target, op, *args):
    return Statement(target, op, tuple(args))


LONG = tuple(S("x", "mul", "g", "lr") for _ in range(30)) + (S("update", "mul", "g", "lr"),)

INVALID = [
    ("31 statements, cap 30", LONG, Rejection.TOO_LONG),
    ("three slots, cap two",
     (S("m", "add", "g", "m"), S("v", "add", "g", "v"), S("state2", "add", "m", "v"),
      S("update", "mul", "state2", "lr")), Rejection.TOO_MANY_SLOTS),
    ("unknown op", (S("update", "frobnicate", "g"),), Rejection.UNKNOWN_OP),
    ("alias is not a canonical name", (S("update", "interpolate", "g", "m", 0.5),),
     Rejection.UNKNOWN_OP),
    ("add with one argument", (S("update", "add", "g"),), Rejection.WRONG_ARITY),
    ("target is not a name", (S("1x", "mul", "g", "lr"), S("update", "mul", "g", "lr")),
     Rejection.BAD_TARGET),
    ("dunder target", (S("__x", "mul", "g", "lr"), S("update", "mul", "g", "lr")),
     Rejection.BAD_TARGET),
    ("sqrt of a literal", (S("x", "sqrt", 2.0), S("update", "mul", "g", "x")),
     Rejection.LITERAL_NOT_ALLOWED),
    ("interp with a literal x", (S("update", "interp", 1.0, "g", 0.5),),
     Rejection.LITERAL_NOT_ALLOWED),
    ("add of two literals", (S("x", "add", 1.0, 2.0), S("update", "mul", "g", "x")),
     Rejection.LITERALS_ONLY),
    ("infinite literal", (S("update", "mul", "g", math.inf),), Rejection.NON_FINITE_LITERAL),
    ("nan literal", (S("update", "mul", "g", math.nan),), Rejection.NON_FINITE_LITERAL),
    ("read of a never-written temp", (S("update", "mul", "g", "x"),), Rejection.UNDEFINED_READ),
    ("read of update before it is written", (S("update", "add", "update", "g"),),
     Rejection.UNDEFINED_READ),
    ("read of a temp written only later",
     (S("update", "mul", "y", "lr"), S("y", "sign", "g")), Rejection.UNDEFINED_READ),
    ("norm of a scalar", (S("x", "norm", "lr"), S("update", "mul", "g", "x")),
     Rejection.REDUCE_SHAPE),
    ("dot of a tensor and a scalar", (S("x", "dot", "g", "t"), S("update", "mul", "g", "x")),
     Rejection.REDUCE_SHAPE),
    ("no update", (S("x", "mul", "g", "lr"),), Rejection.NO_UPDATE),
    ("empty program", (), Rejection.NO_UPDATE),
    ("scalar update (a reduction)", (S("update", "norm", "g"),), Rejection.UPDATE_SHAPE),
    ("scalar update (scaled norm)", (S("n", "global_norm", "g"), S("update", "mul", "n", "lr")),
     Rejection.UPDATE_SHAPE),
    ("update from w only", (S("update", "mul", "w", "lr"),), Rejection.UPDATE_IGNORES_GRADIENT),
    ("update from state that never sees g",
     (S("m", "interp", "w", "m", 0.9), S("update", "mul", "m", "lr")),
     Rejection.UPDATE_IGNORES_GRADIENT),
    ("g only in dead code", (S("x", "sign", "g"), S("update", "mul", "w", "lr")),
     Rejection.UPDATE_IGNORES_GRADIENT),
    ("update never reads lr", (S("update", "sign", "g"),), Rejection.IGNORES_LR),
    ("a built-in step size", (S("update", "mul", "g", 0.01),), Rejection.IGNORES_LR),
    ("lr only in dead code", (S("x", "mul", "g", "lr"), S("update", "sign", "g")),
     Rejection.IGNORES_LR),
    ("lr overwritten by a function of t", (S("lr", "arctanh", "t"), S("update", "mul", "g", "lr")),
     Rejection.IGNORES_LR),
]


@pytest.mark.parametrize("name,statements,reason", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_program_is_rejected_with_its_reason(name, statements, reason):
    assert check(statements, max_len=30, n_slots=2) is reason


VALID = [
    ("g reaches update only through state, one step later",
     (S("update", "mul", "m", "lr"), S("m", "interp", "g", "m", 0.9))),
    ("g reaches update through a slot written from a temp",
     (S("update", "mul", "v", "lr"), S("x", "sign", "g"), S("v", "add", "x", "v"))),
    ("tensor update scaled by a reduction of g",
     (S("n", "norm", "g"), S("x", "mul", "w", "n"), S("update", "mul", "x", "lr"))),
    ("lr reaches update only through state",
     (S("x", "mul", "g", "lr"), S("m", "interp", "x", "m", 0.9), S("update", "mul", "m", 2.0))),
    ("a scalar written to a slot is broadcast to w's shape",
     (S("m", "dot", "g", "w"), S("update", "mul", "m", "lr"))),
    ("inputs may be reassigned", (S("lr", "mul", "lr", 0.001), S("update", "mul", "g", "lr"))),
    ("constant op", (S("c", "pi"), S("x", "mul", "g", "c"), S("update", "mul", "x", "lr"))),
]


@pytest.mark.parametrize("name,statements", VALID, ids=[c[0] for c in VALID])
def test_valid_program_is_accepted(name, statements):
    assert check(statements, max_len=30, n_slots=2) is None


@pytest.mark.parametrize("name,statements,reason",
                         [c for c in INVALID if c[2] is Rejection.IGNORES_LR],
                         ids=[c[0] for c in INVALID if c[2] is Rejection.IGNORES_LR])
def test_ignores_lr_is_allowed_when_switched_off(name, statements, reason):
    assert check(statements, max_len=30, n_slots=2, require_lr=False) is None


def test_mutation_never_yields_a_child_that_ignores_lr():
    rng = np.random.default_rng(0)
    config = MutationConfig(max_len=20)
    parent = seeds.adamw()
    for _ in range(300):
        result = mutate(parent, rng, config)
        if result.child is not None:
            assert check_program(result.child) is None
            parent = result.child
    relaxed = MutationConfig(max_len=20, require_lr=False)
    ignoring = 0
    for _ in range(300):
        result = mutate(seeds.signsgd(), rng, relaxed)
        ignoring += result.child is not None and not result.child.reads_lr
    assert ignoring > 0  # without the switch such children do occur


@pytest.mark.parametrize("name", sorted(seeds.SEEDS))
def test_every_seed_is_accepted_with_two_slots(name):
    assert check_program(seeds.SEEDS[name](), n_slots=2) is None


def test_slot_cap_counts_distinct_slots():
    adam = seeds.paper_adamw(lr_scale=1e-3)  # uses m and v
    assert check_program(adam, n_slots=1) is Rejection.TOO_MANY_SLOTS
    assert check_program(seeds.signsgd(), n_slots=0) is None


def _random_statements(rng, n):
    config = MutationConfig(literal_prob=0.3)
    body = []
    for i in range(n):
        readable = [*INPUTS, *STATE_SLOTS[:2], *(st.target for st in body)]
        target = "update" if i == n - 1 else str(rng.choice(["update", "m", "v", "a", "b"]))
        body.append(random_statement(rng, list(dict.fromkeys(readable)), target, config))
    return tuple(body)


def _updates(program, gs, w):
    state, out = {}, []
    for t, g in enumerate(gs, start=1):
        update, state = numpy_step(program, w, g, state, 0.01, t)
        out.append(update)
    return out


def test_rejected_for_ignoring_g_means_the_update_really_ignores_g():
    """Soundness on random programs: such a program's updates do not change with g."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 4)).astype(np.float32)
    g1 = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3)]
    g2 = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3)]
    seen = 0
    for _ in range(3000):
        statements = _random_statements(rng, int(rng.integers(1, 6)))
        if check(statements, n_slots=2) is not Rejection.UPDATE_IGNORES_GRADIENT:
            continue
        try:
            program = Program(statements)
        except ProgramError:
            continue
        seen += 1
        for a, b in zip(_updates(program, g1, w), _updates(program, g2, w), strict=True):
            np.testing.assert_array_equal(a, b)
    assert seen >= 50


def test_rejected_for_update_shape_means_every_element_gets_the_same_update():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 4)).astype(np.float32)
    gs = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3)]
    seen = 0
    for _ in range(3000):
        statements = _random_statements(rng, int(rng.integers(1, 6)))
        if check(statements, n_slots=2) is not Rejection.UPDATE_SHAPE:
            continue
        seen += 1
        for u in _updates(Program(statements), gs, w):
            flat = u.ravel()
            assert np.all((flat == flat[0]) | (np.isnan(flat) & np.isnan(flat[0])))
    assert seen >= 20


@pytest.mark.parametrize("name,statements,reason",
                         [c for c in INVALID if c[2].value in {f.value for f in Fault}],
                         ids=[c[0] for c in INVALID if c[2].value in {f.value for f in Fault}])
def test_a_malformed_program_is_refused_by_program_and_parser_for_the_same_fault(
        name, statements, reason):
    """check(), Program() and the parser ask one well-formedness rule (find_problem)."""
    problem = find_problem(statements)
    assert problem is not None and problem.fault.value == reason.value
    with pytest.raises(ProgramError, match=re.escape(problem.message)):
        Program(statements)
    if problem.fault in (Fault.UNDEFINED_READ, Fault.LITERAL_NOT_ALLOWED, Fault.LITERALS_ONLY,
                         Fault.NO_UPDATE):  # the others are already syntax errors in text
        text = "".join(st.to_text() + "\n" for st in statements)
        with pytest.raises(ProgramError, match=re.escape(problem.message)):
            Program.parse(text)
