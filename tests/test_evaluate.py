"""The batched evaluator: equals Keras for one program, batch-independent, thread-safe,
hurdles, encoding, per-variable reductions."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tensorflow as tf

from ops import OPS, Op, PerVariable, Shape
from pipeline import ProgramOptimizer, seeds
from pipeline.evaluator import (
    NO_HURDLES,
    Evaluator,
    Hurdles,
    StopReason,
    encode,
    evaluate,
    positions_needed,
    registers_needed,
)
from pipeline.evaluator.encode import (
    OP_ORDER,
    REG_G,
    REG_LR,
    REG_SLOTS,
    REG_T,
    REG_UPDATE,
    REG_W,
    n_registers,
)
from pipeline.evaluator.machine import load_constants, run_programs
from pipeline.execute import numpy_step
from pipeline.fitness import WORST
from pipeline.mutate import MutationConfig, mutate, random_program
from pipeline.program import Program
from pipeline.statement import STATE_SLOTS
from pipeline.tasks import TeacherRegression

# One small task and population size shared by the tests, so the step loop compiles once.
TASK = TeacherRegression(base_steps=40)
POP = 8
DIVERGE = Program.parse("update = g * 1000000.0")


def _random(rng: np.random.Generator, length: int, n_slots: int = 2) -> Program:
    """A random valid program (the search's generator), ``length`` statements."""
    program = random_program(rng, length, MutationConfig(n_slots=n_slots))[0]
    assert program is not None
    return program


def _mutated_seed(rng: np.random.Generator) -> Program:
    """A seed mutated a few times, as a search evaluates them."""
    names = sorted(seeds.SEEDS)
    program = seeds.SEEDS[names[int(rng.integers(len(names)))]]()
    for _ in range(int(rng.integers(1, 6))):
        program = mutate(program, rng, MutationConfig(n_slots=4)).child or program
    return program


def _keras_val_loss(program: Program, task: TeacherRegression) -> float:
    """Train the task's Keras twin with ProgramOptimizer: same init, data order, batch."""
    model = task.keras_model()
    opt = ProgramOptimizer(program, learning_rate=task.learning_rate)
    d, order = task.data(), task.batch_indices()
    for s in range(task.steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(d.x_train[order[s]]) - d.y_train[order[s]]))
        grads = tape.gradient(loss, model.trainable_weights)
        opt.apply_gradients(zip(grads, model.trainable_weights, strict=True))
    return float(tf.reduce_mean(tf.square(model(d.x_val) - d.y_val)))


# More distinct literals than statements: each gets a row of the register file.
LITERALS = Program.parse("m = interp(m, g, 0.1)\na = m * 1.5\nb = a + 0.001\nc = b * 0.75\n"
                         "d = c - 0.0005\nupdate = d * lr")


@pytest.mark.parametrize("program", [seeds.adamw(), seeds.lion(weight_decay=0.01), LITERALS],
                         ids=["adamw", "lion", "literals"])
def test_single_program_matches_keras_program_optimizer(program):
    [res] = evaluate([program], TASK, hurdles=NO_HURDLES, population=POP)
    expected = _keras_val_loss(program, TASK)
    assert res.stop is StopReason.COMPLETED and res.steps == TASK.steps
    assert abs(res.val_loss - expected) <= 1e-4 * max(1.0, expected)
    assert res.fitness == pytest.approx(-res.val_loss)
    assert res.val_loss < 0.5 * res.loss_curve[0]  # it learned something


def test_fitness_does_not_depend_on_batch_mates():
    rng = np.random.default_rng(5)
    target = [seeds.adamw(), seeds.rmsprop()]
    alone = evaluate(target, TASK, population=POP)
    others = [DIVERGE, seeds.lion(), *(_random(rng, 10) for _ in range(9))]
    mixed = evaluate([others[0], target[1], *others[1:5], target[0], *others[5:]], TASK,
                     population=POP)
    for a, b in zip(alone, [mixed[6], mixed[1]], strict=True):
        assert b.fitness == pytest.approx(a.fitness, rel=1e-5)
        assert (a.stop, a.steps) == (b.stop, b.steps)
        np.testing.assert_allclose(a.loss_curve, b.loss_curve, rtol=1e-5)


def test_batches_of_any_size_length_and_register_need_share_one_trace():
    task = TeacherRegression(base_steps=12, seed=3)  # a trainer of its own
    small = [seeds.sgd_momentum()]
    big = [*small, LITERALS, seeds.adamw(),
           *(_mutated_seed(np.random.default_rng(k)) for k in range(5))]
    assert max(map(positions_needed, big)) > positions_needed(small[0])
    assert max(map(registers_needed, big)) > registers_needed(small[0])
    with Evaluator() as evaluator:  # one call at a time: one trainer, reused
        first, = evaluator.evaluate(small, task, hurdles=NO_HURDLES)
        with evaluator.trainer(task) as trainer:
            rows = trainer.rows
        assert rows > 0 and trainer.train.experimental_get_tracing_count() == 1
        again = evaluator.evaluate(big, task, hurdles=NO_HURDLES)
        assert trainer.rows > rows  # grown for more members and registers, not retraced
        assert trainer.train.experimental_get_tracing_count() == 1
        evaluator.evaluate(small, task, hurdles=NO_HURDLES)  # fewer rows: the file is reused
        assert trainer.train.experimental_get_tracing_count() == 1
        with evaluator.trainer(dataclasses.replace(task, seed=7)) as same:  # seed: an input
            assert same is trainer
    assert again[0].fitness == first.fitness


def test_same_seed_same_results_other_seed_differs():
    progs = [seeds.adamw(), seeds.sgd_momentum()]
    a = evaluate(progs, TASK, population=POP)
    b = evaluate(progs, TASK, population=POP)
    assert [r.fitness for r in a] == [r.fitness for r in b]
    c = evaluate(progs, TeacherRegression(base_steps=40, seed=1), population=POP)
    assert [r.fitness for r in a] != [r.fitness for r in c]


@pytest.mark.parametrize("shared", [None, Evaluator()], ids=["module_default", "one_evaluator"])
def test_two_threads_evaluating_the_same_task_at_once_get_the_single_thread_results(shared):
    rng = np.random.default_rng(11)
    batches = [[seeds.adamw(), DIVERGE, *(_mutated_seed(rng) for _ in range(5))],
               [seeds.lion(), seeds.rmsprop(), *(_random(rng, 12) for _ in range(5))]]
    alone = [evaluate(b, TASK, population=POP, evaluator=Evaluator()) for b in batches]
    start = threading.Barrier(len(batches))

    def run(batch):
        start.wait()  # both threads train at once, on one evaluator
        return [evaluate(batch, TASK, population=POP, evaluator=shared) for _ in range(3)]

    with ThreadPoolExecutor(len(batches)) as pool:
        together = list(pool.map(run, batches))
    for expected, rounds in zip(alone, together, strict=True):
        for got in rounds:  # every field exactly (NaN equals NaN in a loss curve)
            np.testing.assert_equal([dataclasses.astuple(r) for r in got],
                                    [dataclasses.astuple(r) for r in expected])


def test_hurdles_stop_diverging_candidates_without_crashing():
    bad_nan = Program.parse("x = log(g)\ne0 = eps()\ny = x / e0\nz = exp(y)\nupdate = z * z")
    results = evaluate([DIVERGE, seeds.adamw(), bad_nan], TASK, population=POP,
                       hurdles=Hurdles(points=(0.25,)))
    diverged, good, nan = results
    assert good.stop is StopReason.COMPLETED and good.steps == TASK.steps
    for r in (diverged, nan):
        assert r.stop in (StopReason.NONFINITE, StopReason.LOSS_CAP)
        assert r.steps == 10 < TASK.steps
        assert r.fitness < good.fitness
    assert nan.fitness == WORST or np.isfinite(nan.fitness)


def test_a_batch_where_every_member_stops_early_ends_cleanly():
    no_baseline = Hurdles(points=(0.25, 0.5), baseline_margin=None)
    results = evaluate([DIVERGE, DIVERGE], TASK, population=POP, hurdles=no_baseline)
    for r in results:
        assert r.stop in (StopReason.NONFINITE, StopReason.LOSS_CAP) and r.steps == 10
    assert encode([], lr=1e-3, steps=(0, 1)).counts.shape == (0, len(OP_ORDER))


def test_hurdle_behind_baseline_stops_slow_learners():
    slow = Program.parse("update = g * 0.0")  # never moves: far behind AdamW
    strict = Hurdles(points=(0.5,), baseline_margin=0.05, loss_cap=1e9)
    slow_r, adamw_r = evaluate([slow, seeds.adamw()], TASK, population=POP, hurdles=strict)
    assert slow_r.stop is StopReason.HURDLE and slow_r.steps == 20
    assert np.isfinite(slow_r.fitness) and slow_r.fitness < adamw_r.fitness
    assert adamw_r.stop is StopReason.COMPLETED


def _interpret(programs, w, g, slots, lr, t, sizes):
    """One step of the register machine, eagerly: (update, new slots) per member."""
    pop, width = w.shape
    encoded = encode(programs, lr=lr, steps=(int(t) - 1, int(t)))
    n_fresh = encoded.n_fresh
    assert encoded.capacity == pop and n_fresh == max(map(registers_needed, programs))
    assert len(encoded.n_rows) == max(map(positions_needed, programs))
    regs = tf.Variable(tf.zeros([encoded.register_rows, width]))  # register r: block r
    for r, value in [(REG_W, w), (REG_G, g), (REG_LR, np.full_like(w, lr)),
                     (REG_T, np.full_like(w, t)), *zip(REG_SLOTS, slots, strict=True)]:
        regs[r * pop : (r + 1) * pop].assign(value)
    enc = {k: tf.constant(v) for k, v in encoded.tensors().items()}
    load_constants(regs, enc["lit_rows"], enc["lit_vals"])
    load_constants(regs, enc["const_rows"], enc["const_vals"][0])
    run_programs(regs, enc, sizes)
    block = regs.numpy()[: n_registers(n_fresh) * pop].reshape(n_registers(n_fresh), pop, width)
    return block[REG_UPDATE], np.stack([block[r] for r in REG_SLOTS])


def test_interpreter_matches_numpy_reference_per_member_and_variable():
    rng = np.random.default_rng(0)
    programs = [*(f() for f in seeds.SEEDS.values()),
                Program.parse("n = norm(g)\nc = clip_by_global_norm(g, 0.5)\n"
                              "d = dot(g, m)\nm = interp(m, g, 0.1)\nu = c / n\n"
                              "update = u + d\nlr = lr * 2.0\nupdate = update * lr"),
                # Hoisted step constants: a name rewritten after a tensor statement read it;
                # reductions of scalars; an arity-0 op; a constant written to a slot.
                Program.parse("a = lr * 2.0\nu = g * a\na = a * 3.0\nupdate = u * a"),
                Program.parse("n = norm(t)\nc = dot(lr, t)\nx = n * c\ne0 = eps()\n"
                              "x = x + e0\nupdate = g * x"),
                Program.parse("m = lr * 0.5\nk = power(0.9, t)\nm = m * k\nupdate = g * m"),
                *(_random(rng, int(rng.integers(8, 16)), n_slots=4) for _ in range(30)),
                *(_mutated_seed(rng) for _ in range(30))]
    sizes = (6, 3, 5)
    width, pop = sum(sizes), len(programs)
    w = rng.normal(size=(pop, width)).astype(np.float32)
    g = rng.normal(size=(pop, width)).astype(np.float32)
    edges = np.cumsum((0, *sizes))
    # Reachable states (the reference's fast paths assume them): two reference steps from 0.
    slots = np.zeros((len(STATE_SLOTS), pop, width), np.float32)
    for p, program in enumerate(programs):
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            state: dict = {}
            for step in (1, 2):
                g_s = rng.normal(size=b - a).astype(np.float32)
                _, state = numpy_step(program, w[p, a:b], g_s, state, 0.01, step)
            for k, s in enumerate(STATE_SLOTS):
                slots[k, p, a:b] = state.get(s, 0.0)
    update, new_slots = _interpret(programs, w, g, slots, 0.01, 3.0, sizes)
    for p, program in enumerate(programs):
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            state = {s: slots[k, p, a:b] for k, s in enumerate(STATE_SLOTS)}
            ref_u, ref_s = numpy_step(program, w[p, a:b], g[p, a:b], state, 0.01, 3)
            np.testing.assert_allclose(update[p, a:b], ref_u, rtol=2e-3, atol=1e-5,
                                       equal_nan=True, err_msg=program.to_text())
            for k, s in enumerate(STATE_SLOTS):
                if s in ref_s:
                    np.testing.assert_allclose(new_slots[k, p, a:b], ref_s[s], rtol=2e-3,
                                               atol=1e-5, equal_nan=True)


def test_literals_are_rows_shared_by_value():
    a = Program.parse("u = g * 0.5\nupdate = u * lr")
    b = Program.parse("x = g * 0.5\ny = x + -0.0\nz = y * 0.0\nupdate = z * lr")
    enc = encode([a, b], 8, lr=1e-3, steps=(0, 3))
    assert len(enc.const_rows) == 0  # nothing varies with the step
    bits = sorted(enc.lit_vals.view(np.uint32).tolist())  # -0.0 and 0.0 are two values
    assert bits == sorted(np.float32([0.5, -0.0, 0.0]).view(np.uint32).tolist())
    after_registers = enc.register_rows - 3  # one row per value, after the registers
    assert enc.lit_rows.tolist() == [after_registers, after_registers + 1, after_registers + 2]
    assert after_registers == n_registers(registers_needed(b)) * 2
    read = {int(r) for i in range(8) for j in range(2)
            for r in enc.gather_idx[i, j, : enc.n_args[i, j]]}
    assert set(enc.lit_rows.tolist()) <= read  # statements read the literal rows


def test_step_constants_are_hoisted_out_of_the_machine_and_exact_across_segments():
    adamw = seeds.adamw()
    # Bias correction (2 power, 2 sub, sqrt, div, mul) and lr * wd: 8 of 17 live statements.
    # lr * wd is the same at every step: a row loaded once per segment, like a literal.
    enc = encode([adamw], 16, lr=1e-3, steps=(0, 5))
    assert enc.const_rows.shape == (7,) and enc.const_vals.shape == (5, 7)
    assert np.count_nonzero(enc.n_rows) == len(adamw.live_statements) - 8
    b1 = 0.9 ** np.arange(1, 6)  # the first hoisted value: power(0.9, t) at t = 1..5
    np.testing.assert_allclose(enc.const_vals[:, 0], b1, rtol=1e-6)
    assert np.float32(1e-3) * np.float32(0.004) in enc.lit_vals  # as the reference computes it
    # Members with the same constants share their rows; other values get rows of their own.
    other = Program.parse(adamw.to_text().replace("power(0.9, t)", "power(0.8, t)"))
    shared = encode([adamw, adamw, other], 16, lr=1e-3, steps=(0, 5))
    assert shared.const_rows.shape == (7 + 4,)  # 0.8 changes b1, c1, alpha, alpha * lr
    assert sorted(r % 3 for r in shared.const_rows) == [0] * 7 + [2] * 4  # none at member 1
    assert len(shared.lit_rows) == len(enc.lit_rows)  # the same literals: no new rows
    # Training in segments (hurdle points) loads each segment's values: same as one segment.
    segments = Hurdles(points=(0.25, 0.5), loss_cap=float("inf"), baseline_margin=None)
    whole, = evaluate([adamw], TASK, population=POP, hurdles=NO_HURDLES)
    parts, = evaluate([adamw], TASK, population=POP, hurdles=segments)
    assert parts.stop is StopReason.COMPLETED
    assert parts.val_loss == whole.val_loss


def test_reductions_take_their_per_variable_form_from_the_op_table():
    axis_ops = {op.name for op in OPS.values() if op.axis_arg}
    assert axis_ops == {op.name for op in OPS.values() if op.per_variable is not None}
    assert OPS["global_norm"].per_variable is PerVariable.RMS
    with pytest.raises(ValueError, match="per_variable"):  # an axis op must say how
        Op("sum", 1, Shape.REDUCE, np.sum, (False,), axis_arg=True, src="tf.reduce_sum({0})")
    with pytest.raises(ValueError, match="per_variable"):  # and only an axis op may
        Op("twice", 1, Shape.ELEMENTWISE, np.add, (False,), src="{0} + {0}",
           per_variable=PerVariable.NORM)
