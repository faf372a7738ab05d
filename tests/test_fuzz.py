"""Fuzzing: random, mutated and hostile-constant programs through the whole candidate path.

Each candidate is a tuple of raw statements (what a mutation produces) and goes
parse/construct -> text round trip -> abstract execution (``check``) -> evaluation on a small
task, and through the NumPy reference executor on a fixed probe. Nothing may crash; a
rejected candidate has a :class:`Rejection`; an evaluated one has a fitness that is finite
or ``WORST`` (-inf), and -inf exactly when its ``EvalResult.stop`` says NONFINITE.

The task is the teacher proxy (MLP 16-32-1, batch 32) cut to 20 steps:
``make_task("teacher", base_steps=20)``.

Property-based tests (hypothesis, derandomized): parser round trip for generated programs and
generated texts; NumPy/TF agreement of every op on generated float32 inputs.
"""

from __future__ import annotations

import functools
import math
import time
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ops import OPS, Shape
from pipeline import seeds
from pipeline.abstract import Rejection, check
from pipeline.evaluator import StopReason, evaluate
from pipeline.execute import numpy_step
from pipeline.fitness import WORST
from pipeline.mutate import MutationConfig, mutate, random_program
from pipeline.program import Program
from pipeline.statement import INPUTS, OUTPUT, STATE_SLOTS, ProgramError, Statement

TASK_NAME, TASK_STEPS = "teacher", 20
MAX_LEN = 30
# Every op, four slots, every mutation kind (constant tuning too). Programs that ignore lr are
# generated too (about 1 in 50 random draws reads both g and lr: requiring it would cost 10x
# the draws); the front end's check() still rejects them, as `ignores_lr`.
CONFIG = MutationConfig(insert=0.3, delete=0.2, change_arg=0.3, replace=0.1, tune_constant=0.1,
                        max_len=MAX_LEN, n_slots=4, literal_prob=0.3, require_lr=False)
ALL_OPS = tuple(sorted(OPS))
ELEMENTWISE = tuple(n for n in ALL_OPS if OPS[n].shape is Shape.ELEMENTWISE)
# Extreme literals: float32's edges and beyond (1e39 and 1e300 are finite floats but inf in
# float32: abstract execution rejects them as non-finite).
F32_MAX = float(np.finfo(np.float32).max)
EXTREMES = (1e30, -1e30, 1e-30, -1e-30, 0.0, -0.0, F32_MAX, -F32_MAX, 1e38, 1e39, 1e-45,
            5e-324, 1e300, -1e300, 1e8, 1e-8, -1e-8, 88.0, 127.0, 1.0, -1.0, 0.5)
FAULTS = ("unknown_op", "arity", "literal_not_allowed", "non_finite", "bad_target",
          "undefined_read", "literals_only", "no_update", "reduce_scalar", "too_long",
          "no_gradient", "scalar_update")
PROBE_SHAPE = (3, 5)


# ---- generators (seeded) ---------------------------------------------------------------------


def _random_candidates(rng: np.random.Generator, n: int) -> list[tuple[Statement, ...]]:
    """``pipeline.mutate.random_program`` at every length up to the max."""
    out = []
    while len(out) < n:
        program, statements, _, _ = random_program(rng, int(rng.integers(1, MAX_LEN + 1)), CONFIG)
        out.append(program.statements if program is not None else statements)
    return out


def _mutated_candidates(rng: np.random.Generator, n: int) -> list[tuple[Statement, ...]]:
    """Chains of ``mutate`` from the seeds and from random programs (every kept child)."""
    out: list[tuple[Statement, ...]] = []
    names = sorted(seeds.SEEDS)
    while len(out) < n:
        if rng.random() < 0.5:
            parent = seeds.SEEDS[names[int(rng.integers(len(names)))]]()
        else:
            parent = random_program(rng, int(rng.integers(1, 8)), CONFIG)[0] or seeds.lion()
        for _ in range(int(rng.integers(1, 20))):
            result = mutate(parent, rng, CONFIG)
            if result.child is None:
                out.append(result.statements)  # the last rejected draw
                break
            parent = result.child
            out.append(parent.statements)
    return out[:n]


def _literal(rng: np.random.Generator) -> float:
    return EXTREMES[int(rng.integers(len(EXTREMES)))]


def _extreme_candidates(rng: np.random.Generator, n: int) -> list[tuple[Statement, ...]]:
    """Our own generator: every op in turn, extreme literals, lengths up to the max (one in
    eight a chain of ``MAX_LEN`` live statements), and in one candidate of five a deliberate
    fault (each fault of ``FAULTS`` in turn)."""
    out = []
    for k in range(n):
        length = MAX_LEN if k % 4 == 0 else int(rng.integers(1, MAX_LEN + 1))
        chain = k % 8 == 0
        readable = [*INPUTS, *STATE_SLOTS]
        body: list[Statement] = []
        for i in range(length):
            name = ALL_OPS[(k * 7 + i) % len(ALL_OPS)] if i % 2 else ALL_OPS[
                int(rng.integers(len(ALL_OPS)))]
            if chain and OPS[name].shape is not Shape.ELEMENTWISE:
                name = ELEMENTWISE[(k + i) % len(ELEMENTWISE)]
            op = OPS[name]
            args: list[str | float] = [
                _literal(rng) if ok and rng.random() < 0.4 else
                readable[int(rng.integers(len(readable)))] for ok in op.const_ok]
            if args and all(isinstance(a, float) for a in args):
                args[0] = "g"
            if chain and args:  # a chain: each statement reads the one before, all live
                args[0] = body[-1].target if body else "g"
            if i == length - 1:
                target = OUTPUT
            elif chain:
                target = f"x{i}"
            else:
                pool = [OUTPUT, *STATE_SLOTS, "lr", "t", "w", "g", f"x{i}", f"x{i}"]
                target = pool[int(rng.integers(len(pool)))]
            body.append(Statement(target, name, tuple(args)))
            readable.append(target)
        if k % 5 == 4:
            body = _inject(FAULTS[(k // 5) % len(FAULTS)], body, rng)
        out.append(tuple(body))
    return out


def _inject(fault: str, body: list[Statement], rng: np.random.Generator) -> list[Statement]:
    i = int(rng.integers(len(body)))
    st = body[i]
    op = OPS[st.op]
    match fault:
        case "unknown_op":
            body[i] = Statement(st.target, ["eval", "interpolate", "__import__", "exec",
                                            "SIGN"][i % 5], st.args)
        case "arity":
            body[i] = Statement(st.target, st.op, (*st.args, "g") if i % 2 else st.args[:-1])
        case "literal_not_allowed":
            body[i] = Statement(st.target, "sign", (1e30,))
        case "non_finite":
            body[i] = Statement(st.target, "mul", ("g", [math.inf, -math.inf, math.nan][i % 3]))
        case "bad_target":
            bad = ["__class__", "1x", "x.y", "", "os.system", "x y", "\uff58", "\u0430",
                   "x\x00", "update\n"]
            body[i] = Statement(bad[i % len(bad)], st.op, st.args)
        case "undefined_read":
            name = ["undefined", "__builtins__", "os", "x.y", "", "\u0430"][i % 6]
            body[i] = Statement(st.target, "add", ("g", name))
        case "literals_only":
            body[i] = Statement(st.target, "add", (1e30, -0.0))
        case "no_update":
            body = [Statement("x_" if s.target == OUTPUT else s.target, s.op, s.args)
                    for s in body]
        case "reduce_scalar":
            body[i] = Statement(st.target, "norm", ("lr",))
        case "too_long":
            body = body + [Statement(OUTPUT, "mul", ("g", _literal(rng)))] * (
                MAX_LEN + 2 - len(body))
        case "no_gradient":
            body = [Statement(OUTPUT, "mul", ("w", 1e30))]
        case "scalar_update":
            body = [*body, Statement(OUTPUT, "dot", ("g", "w"))]
    del op
    return body


@functools.cache
def _candidates(n: int, seed: int) -> tuple[tuple[Statement, ...], ...]:
    """``n`` candidates: a third from each generator, from one seeded generator."""
    rng = np.random.default_rng(seed)
    a = n // 3
    return tuple(_random_candidates(rng, a) + _mutated_candidates(rng, a)
                 + _extreme_candidates(rng, n - 2 * a))


# ---- the pipeline ------------------------------------------------------------------------------


def _construct(statements: tuple[Statement, ...]) -> Program | ProgramError:
    try:
        return Program(statements)
    except ProgramError as e:
        return e


def _front_end(candidates) -> tuple[list[Program], Counter, Counter]:
    """Construct, round-trip and check every candidate; the programs that constructed (to be
    evaluated), rejections by reason, and how many constructed/refused."""
    rejected: Counter = Counter()
    built: Counter = Counter()
    programs = []
    for statements in candidates:
        reason = check(statements, max_len=MAX_LEN, n_slots=4)
        program = _construct(statements)
        if reason is not None:
            rejected[reason.value] += 1
        if isinstance(program, ProgramError):
            built["refused"] += 1
            # The constructor never accepts less than abstract execution does.
            assert reason is not None, (statements, program)
            continue
        built["constructed"] += 1
        text = program.to_text()
        again = Program.parse(text)
        assert again == program and again.to_text() == text, text
        assert again.structural_hash() == program.structural_hash()
        programs.append(program)
    return programs, rejected, built


def _check_results(programs: list[Program], results) -> Counter:
    assert len(results) == len(programs)
    stops: Counter = Counter()
    for program, r in zip(programs, results, strict=True):
        stops[r.stop.value] += 1
        assert isinstance(r.stop, StopReason)
        assert not math.isnan(r.fitness) and r.fitness != math.inf, program.to_text()
        worst = r.fitness == WORST
        assert worst == (r.stop is StopReason.NONFINITE), (program.to_text(), r)
        if not worst:
            assert math.isfinite(r.val_loss), (program.to_text(), r)
    stops["worst"] = sum(r.fitness == WORST for r in results)
    return stops


def _numpy_probe(programs: list[Program]) -> Counter:
    """Two steps of each program in the NumPy reference on a fixed probe; returns how many
    gave a non-finite update or state (allowed) and asserts shapes and dtypes."""
    rng = np.random.default_rng(7)
    w = rng.normal(size=PROBE_SHAPE).astype(np.float32)
    w.flat[:6] = [0.0, -0.0, 1e30, -1e-30, 3e38, 1e-45]
    g = rng.normal(size=PROBE_SHAPE).astype(np.float32)
    g.flat[:4] = [0.0, -1e30, 1e-30, -0.0]
    out: Counter = Counter()
    for program in programs:
        state: dict = {}
        finite = True
        for t in (1, 2):
            update, state = numpy_step(program, w, g, state, 0.01, t)
            assert update.shape == w.shape and update.dtype == np.float32
            assert set(state) == set(program.slots)
            assert all(v.shape == w.shape and v.dtype == np.float32 for v in state.values())
            finite &= bool(np.all(np.isfinite(update)))
        out["finite" if finite else "nonfinite"] += 1
    return out


# Programs that must diverge on any task: the evaluator scores them worst, as NONFINITE.
DIVERGING = (
    "update = g * 1e+30",
    "x = exp(g)\nupdate = x * 3.4e+38",
    "x = power(g, 1e+30)\nupdate = x * g",
    "x = g / 0.0\nupdate = x * 1e+30",
    "x = g * 3.4e+38\nupdate = x - x",
    "m = m + g\nx = exp10(m)\nupdate = x * 1e+30",
)


def _task():
    from pipeline.tasks import make_task

    return make_task(TASK_NAME, base_steps=TASK_STEPS)


def test_every_fault_of_the_extreme_generator_is_rejected_with_its_reason():
    """The fault injector produces each abstract rejection reason it aims at."""
    candidates = _extreme_candidates(np.random.default_rng(1), 5 * 4 * len(FAULTS))
    _, rejected, built = _front_end(candidates)
    produced = {Rejection(r) for r in rejected}
    check_reasons = set(Rejection) - {Rejection.UNCHANGED, Rejection.INVALID_PROGRAM,
                                      Rejection.TOO_MANY_SLOTS}
    assert check_reasons <= produced, check_reasons - produced
    assert built["refused"] > 0 and built["constructed"] > 0


def test_a_thousand_fuzzed_programs_pass_the_front_end_and_the_numpy_reference():
    candidates = _candidates(1000, 11)
    programs, rejected, _ = _front_end(candidates)
    assert len(programs) > 500 and sum(rejected.values()) > 50
    counts = _numpy_probe(programs)
    assert counts["finite"] > 0 and counts["nonfinite"] > 0


@pytest.mark.slow
def test_ten_thousand_fuzzed_programs_never_crash_and_broken_ones_score_worst(capsys):
    t0 = time.perf_counter()
    candidates = _candidates(10_000, 2024)
    assert len(candidates) == 10_000
    used_ops = {st.op for c in candidates for st in c}
    assert set(OPS) <= used_ops
    literals = {repr(a) for c in candidates for st in c for a in st.args if isinstance(a, float)}
    assert {repr(x) for x in EXTREMES} <= literals
    assert max(len(c) for c in candidates) >= MAX_LEN
    programs, rejected, built = _front_end(candidates)
    diverging = [Program.parse(t) for t in DIVERGING]
    t1 = time.perf_counter()
    results = evaluate(programs + diverging, _task(), population=2048)
    t2 = time.perf_counter()
    for text, r in zip(DIVERGING, results[len(programs):], strict=True):
        assert r.fitness == WORST and r.stop is StopReason.NONFINITE, (text, r)
    results = results[: len(programs)]
    stops = _check_results(programs, results)
    accepted = [p for p in programs if check(p.statements, max_len=MAX_LEN, n_slots=4) is None]
    assert {st.op for p in accepted for st in p.statements} == set(OPS)
    long = sum(len(p.live_statements) == MAX_LEN for p in accepted)
    assert long > 10
    numpy_counts = _numpy_probe(programs)
    t3 = time.perf_counter()
    assert stops["worst"] > 0 and stops["completed"] > 0
    with capsys.disabled():
        print(f"\nfuzz: {len(candidates)} candidates, {built['constructed']} constructed, "
              f"{built['refused']} refused by Program(), {len(accepted)} accepted by check() "
              f"({long} with {MAX_LEN} live statements)")
        print(f"fuzz: rejected by reason {dict(sorted(rejected.items()))}")
        print(f"fuzz: evaluated {len(programs)}: stops {dict(sorted(stops.items()))}")
        print(f"fuzz: numpy probe {dict(numpy_counts)}")
        print(f"fuzz: front end {t1 - t0:.1f}s, evaluate {t2 - t1:.1f}s, numpy {t3 - t2:.1f}s")


# ---- property-based: parser round trip -------------------------------------------------------

_SETTINGS = settings(derandomize=True, max_examples=80, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
_TARGETS = (OUTPUT, *STATE_SLOTS, "lr", "x0", "x1", "tmp_2")
_floats = st.floats(-F32_MAX, F32_MAX)  # every literal a program may hold


@st.composite
def programs(draw) -> Program:
    n = draw(st.integers(1, 12))
    readable = [*INPUTS, *STATE_SLOTS]
    body = []
    for i in range(n):
        op = OPS[draw(st.sampled_from(ALL_OPS))]
        args = [draw(_floats | st.sampled_from(readable)) if ok else
                draw(st.sampled_from(readable)) for ok in op.const_ok]
        if args and all(isinstance(a, float) for a in args):
            args[0] = "g"
        target = OUTPUT if i == n - 1 else draw(st.sampled_from(_TARGETS))
        body.append(Statement(target, op.name, tuple(args)))
        readable.append(target)
    return Program(tuple(body))


@_SETTINGS
@given(programs())
def test_generated_programs_round_trip_through_text(program):
    text = program.to_text()
    again = Program.parse(text)
    assert again == program and again.to_text() == text
    for a, b in zip(program.statements, again.statements, strict=True):
        for x, y in zip(a.args, b.args, strict=True):
            assert type(x) is type(y)
            if isinstance(x, float):
                assert math.copysign(1.0, x) == math.copysign(1.0, y)


_SPACE = st.text(alphabet=" \t", max_size=3)


def _literal_texts(value: float) -> st.SearchStrategy[str]:
    """Texts the parser reads as ``value``: repr (every form repr makes: 1e-05, 1e+16, -0.0,
    5e-324, 123.0), with an explicit +, with an upper-case exponent."""
    r = repr(value)
    forms = {r, r.upper()}
    if not r.startswith("-"):
        forms.add("+" + r)
    return st.sampled_from(sorted(forms))


@st.composite
def texts(draw) -> tuple[str, Program]:
    """A program and a text of it with random spacing, comments, blank lines, aliases and
    infix/call forms."""
    program = draw(programs())
    lines = []
    for stmt in program.statements:
        op = OPS[stmt.op]
        pieces = [draw(_literal_texts(a)) if isinstance(a, float) else a for a in stmt.args]
        sp = [draw(_SPACE) for _ in range(8)]
        if op.infix is not None and draw(st.booleans()):
            rhs = f"{pieces[0]}{sp[0]} {op.infix} {sp[1]}{pieces[1]}"
        else:
            name = draw(st.sampled_from((op.name, *op.aliases)))
            inner = f"{sp[2]},{sp[3]}".join(pieces)
            rhs = f"{name}({sp[4]}{inner}{sp[5]})"
        comment = draw(st.sampled_from(("", "# note", "  #x = eval(g)", "# update = w")))
        lines.append(f"{sp[6]}{stmt.target}{sp[7]}={sp[0]}{rhs}{sp[1]}{comment}")
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(("", "   ", "# comment", "\t# c"))))
    ending = draw(st.sampled_from(("\n", "\r\n")))
    return ending.join(lines) + draw(st.sampled_from(("", ending))), program


@_SETTINGS
@given(texts())
def test_generated_texts_parse_to_their_program_and_print_canonically(case):
    text, program = case
    parsed = Program.parse(text)
    assert parsed == program
    assert parsed.to_text() == program.to_text()
    assert Program.parse(parsed.to_text()) == parsed


# ---- property-based: NumPy/TF agreement -----------------------------------------------------

# float32 inputs, any finite value but subnormals: TF on CPU flushes subnormals to zero, so an
# op of a subnormal can differ by that flush (sign(1e-45) is 1 in NumPy, 0 in TF).
_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _agree(got: np.ndarray, want: np.ndarray, scale: np.ndarray | float = 1.0) -> None:
    """tests/test_ops.py's convention: 1e-5 relative, an absolute floor of 1e-6 (times the
    size of the summed terms, for reductions)."""
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.maximum(scale, 1.0))


@pytest.mark.parametrize("name", ALL_OPS)
def test_numpy_and_tensorflow_agree_on_generated_float32_inputs(name):
    op = OPS[name]
    if op.arity == 0:
        np.testing.assert_allclose(op.np_fn(), op.tf_fn().numpy(), rtol=1e-6)
        return

    @settings(derandomize=True, max_examples=40, deadline=None)
    @given(hnp.arrays(np.float32, st.integers(1, 6).map(lambda n: (op.arity, n)), elements=_f32))
    def agree(xs):
        args = list(xs)
        with np.errstate(all="ignore"):
            want = np.asarray(op.np_fn(*args), np.float32)
            scale = _reduction_scale(op, args)
        got = op.tf_fn(*[tf.constant(a) for a in args]).numpy()
        assume(np.isfinite(scale).all())
        _agree(got, want, scale)

    agree()


def _reduction_scale(op, args) -> float:
    """For a sum that can cancel (dot, cosine_sim), the size of its terms relative to the
    result's units: a sum's rounding error is bounded by eps x the sum of |terms|."""
    if op.name not in ("dot", "cosine_sim"):
        return 1.0
    x, y = (a.astype(np.float64) for a in args)
    terms = float(np.sum(np.abs(x * y)))
    if op.name == "dot":
        return terms
    return terms / (float(np.linalg.norm(x) * np.linalg.norm(y)) + 1e-8)
