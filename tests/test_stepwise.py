"""The step-vectorised interpreter: vectorising over the steps changes no bit, it agrees with
the NumPy executor, and the evaluator's cached table of hoisted step constants is its output,
read-only."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import seeds
from pipeline.evaluator.encode import _constant_table
from pipeline.execute import step_constant_statements
from pipeline.mutate import MutationConfig, mutate
from pipeline.program import Program
from pipeline.statement import Statement
from pipeline.stepwise import constant_over_steps, step_table, step_values

HAND_WRITTEN = [  # step constants the mutants seldom draw: reductions of scalars, reassigned lr
    "a = norm(t)\nb = a * lr\nu = g * b\nupdate = u * lr\n",
    "a = dot(t, lr)\nb = global_norm(a)\nu = g * b\nupdate = u * lr\n",
    "lr = lr * 0.001\nk = arctanh(t)\nk = k + lr\nu = g * k\nupdate = u * lr\n",
    "a = power(0.9, t)\nb = 1.0 - a\nc = sqrt(b)\nd = lr / c\nupdate = g * d\n",
    "a = min(t, 0.5)\nb = sign(t)\nc = a / b\nu = g * c\nupdate = u * lr\n",
]


def _step_constants(program: Program) -> tuple[Statement, ...]:
    """The statements the evaluator hoists: the live program's step constants, in order."""
    live = program.dead_code_eliminated()
    return tuple(live.statements[k] for k in sorted(step_constant_statements(live)))


def _mutants(n: int) -> list[Program]:
    rng = np.random.default_rng(16)
    pool = [seeds.adamw(), seeds.paper_adamw(), seeds.lion(), seeds.rmsprop()]
    while len(pool) < n:
        child = mutate(pool[int(rng.integers(len(pool)))], rng, MutationConfig()).child
        if child is not None:
            pool.append(child)
    return pool


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype == np.float32 and a.shape == b.shape and bool(
        np.all(a.view(np.uint32) == b.view(np.uint32)))


@pytest.mark.parametrize(("lr", "t0", "t1"), [(1e-3, 0, 300), (0.0316, 1000, 1257)])
def test_step_table_over_many_steps_is_bit_identical_to_one_step_at_a_time(lr, t0, t1):
    programs = _mutants(400) + [Program.parse(text) for text in HAND_WRITTEN]
    tables = [_step_constants(p) for p in programs]
    assert sum(len(s) > 0 for s in tables) > 60  # the check covers many programs
    t = np.arange(t0 + 1, t1 + 1, dtype=np.float32)
    picked = [0, 1, len(t) // 2, len(t) - 1]
    for statements in tables:
        whole = step_table(statements, t, lr)
        for k in picked:
            assert _same_bits(whole[k:k + 1], step_table(statements, t[k:k + 1], lr))


def test_the_evaluators_table_of_adamws_bias_correction_is_the_step_table_read_only():
    statements = _step_constants(seeds.adamw())
    assert any("t" in st.reads() for st in statements)
    t = np.arange(1, 101, dtype=np.float32)
    table = _constant_table(statements, 1e-3, 0, 100)
    assert _same_bits(step_table(statements, t, 1e-3), table)
    assert not table.flags.writeable  # cached and shared: no caller may change it


def test_step_table_with_no_statements_has_no_columns():
    table = step_table((), np.arange(1, 4, dtype=np.float32), 1e-3)
    assert table.shape == (3, 0) and table.dtype == np.float32


def test_step_values_agree_with_the_numpy_executor_step_by_step():
    from pipeline.execute import numpy_step  # the reference, one step at a time

    program = Program.parse(HAND_WRITTEN[3])
    statements = _step_constants(program)
    columns = step_values(statements, np.arange(1, 6, dtype=np.float32), 1e-3)
    w = np.ones(3, np.float32)
    g = np.full(3, 0.5, np.float32)
    state = {}
    for k in range(5):
        update, state = numpy_step(program, w, g, state, lr=1e-3, t=k + 1)
        assert update[0] == np.float32(0.5) * columns[-1][k]


def test_constant_over_steps_finds_one_value_at_every_step():
    sign_t = (Statement("_0", "sign", ("t",)), Statement("_1", "mul", ("_0", 2.5)))
    assert constant_over_steps(sign_t) == 2.5
    assert constant_over_steps((Statement("_0", "mul", ("t", 2.0)),)) is None
    # min(t, 0.5) is 0.5 from t = 1 on; t / t is 1 everywhere (float32 t is exact)
    assert constant_over_steps((Statement("_0", "min", ("t", 0.5)),)) == 0.5
    assert constant_over_steps((Statement("_0", "div", ("t", "t")),)) == 1.0
