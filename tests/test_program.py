"""Program: parsing, printing, validation, dataflow hash, dead-code elimination."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import Program, ProgramError, Statement, seeds
from pipeline.statement import F32_LIMIT

LION_TEXT = """\
c = interp(g, m, 0.9)
u = sign(c)
update = u * lr
m = interp(g, m, 0.99)
"""


def test_lion_text_parses_to_the_seed_and_prints_back_exactly():
    p = Program.parse(LION_TEXT)
    assert p == seeds.lion()
    assert p.to_text() == LION_TEXT
    assert p.statements[0] == Statement("c", "interp", ("g", "m", 0.9))


@pytest.mark.parametrize("name", sorted(seeds.SEEDS))
def test_every_seed_round_trips(name):
    p = seeds.SEEDS[name]()
    assert Program.parse(p.to_text()) == p
    assert hash(Program.parse(p.to_text())) == hash(p)


def test_infix_and_call_forms_are_the_same_statement():
    a = Program.parse("update = add(g, lr)")
    b = Program.parse("update = g + lr")
    assert a == b and a.to_text() == "update = g + lr\n"


def test_aliases_comments_blank_lines_and_signed_literals():
    p = Program.parse(
        "# a comment\n\nx = interpolate(g, m, -0.5)  # trailing\ny = x - -2\nupdate = y * lr\n"
    )
    assert p.statements[0] == Statement("x", "interp", ("g", "m", -0.5))
    assert p.statements[1] == Statement("y", "sub", ("x", -2.0))
    assert Program.parse(p.to_text()) == p


@given(st.floats(-F32_LIMIT, F32_LIMIT, exclude_min=True, exclude_max=True, width=64))
def test_any_finite_literal_round_trips_exactly(value):
    """Any float64 that float32 holds as finite (programs run in float32)."""
    p = Program(
        (Statement("a", "mul", ("g", value)), Statement("update", "mul", ("a", "lr")))
    )
    q = Program.parse(p.to_text())
    assert q == p
    assert math.copysign(1.0, q.statements[0].args[1]) == math.copysign(1.0, value)


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("update = foo(g)", 1, 10, "unknown function 'foo'"),
        ("update = sign(g, g)", 1, 10, "sign takes 1 argument(s), got 2"),
        ("x = g * lr\nupdate = q * x", 2, 10, "variable 'q' is read before it is written"),
        ("update = g * 1.2.3", 1, 14, "malformed number '1.2.3'"),
        ("update = g * 1e999", 1, 14, "number out of range"),
        ("update = g ** 2", 1, 13, "expected a variable or a number"),
        ("update = g", 1, 11, "a statement is 'name = fn(arg, ...)' or 'name = a <op> b'"),
        ("update = sign(0.5)", 1, 15, "argument 1 of sign must be a variable"),
        ("update = 0.5 * 0.5", 1, 10, "mul of numbers only is a constant"),
        ("update = sign(g", 1, 16, "expected ',' or ')'"),
        ("update = g; import os", 1, 11, "expected one of + - * / or '('"),
        ("update = __import__(g)", 1, 10, "names may not start with '__'"),
        ("update = g.__class__", 1, 11, "expected one of + - * / or '('"),
        ("1 = g * g", 1, 1, "expected a variable name to assign"),
    ],
)
def test_parse_errors_say_line_column_and_what(text, line, column, message):
    with pytest.raises(ProgramError) as err:
        Program.parse(text)
    assert err.value.line == line
    assert err.value.column == column
    assert message in str(err.value)


def test_a_program_that_never_assigns_update_is_rejected():
    with pytest.raises(ProgramError, match="never assigns 'update'"):
        Program.parse("x = g * lr\n")
    with pytest.raises(ProgramError, match="never assigns 'update'"):
        Program.parse("")


def test_oversized_text_is_rejected_fast():
    with pytest.raises(ProgramError, match="characters; at most"):
        Program.parse("update = g * lr " + "x" * 5_000_000)
    with pytest.raises(ProgramError, match="line is"):
        Program.parse("update = g * lr" + " " * 20_000)


def test_constructing_from_statements_validates():
    with pytest.raises(ProgramError, match="read before it is written"):
        Program((Statement("update", "mul", ("nope", "lr")),))
    with pytest.raises(ProgramError, match="unknown function"):
        Program((Statement("update", "frobnicate", ("g",)),))
    with pytest.raises(ProgramError, match="not finite"):
        Program((Statement("update", "mul", ("g", math.inf)),))


def test_programs_are_immutable_values():
    p = seeds.lion()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.statements = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.statements[0].op = "sin"  # type: ignore[misc]
    assert {p, seeds.lion()} == {p}


# ---- structural hash -------------------------------------------------------------------------


def _h(text: str) -> str:
    return Program.parse(text).structural_hash()


def test_hash_ignores_variable_names_and_dead_code():
    a = "c = interp(g, m, 0.9)\nu = sign(c)\nupdate = u * lr\nm = interp(g, m, 0.99)\n"
    b = (
        "junk = sin(w)\nq = interp(g, m, 0.9)\nr = sign(q)\nvv = exp(junk)\n"
        "update = r * lr\nm = interp(g, m, 0.99)\n"
    )
    assert _h(a) == _h(b)


def test_hash_ignores_which_slot_holds_the_state():
    a = "m = interp(g, m, 0.9)\nupdate = m * lr\n"
    b = "state3 = interp(g, state3, 0.9)\nupdate = state3 * lr\n"
    assert _h(a) == _h(b)


def test_hash_ignores_the_order_of_independent_statements():
    a = "x = sign(g)\ny = w * 0.1\nz = x + y\nupdate = z * lr\n"
    b = "y = w * 0.1\nx = sign(g)\nz = x + y\nupdate = z * lr\n"
    assert _h(a) == _h(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("update = g * lr", "update = lr * g"),  # argument order matters
        ("x = g * 0.5\nupdate = x * lr", "x = g * 0.25\nupdate = x * lr"),  # constants matter
        ("x = sin(g)\nupdate = x * lr", "x = cos(g)\nupdate = x * lr"),  # ops matter
        (  # state carried across steps matters
            "m = interp(g, m, 0.9)\nupdate = m * lr",
            "x = interp(g, m, 0.9)\nupdate = x * lr",
        ),
    ],
)
def test_hash_distinguishes_different_dataflow(a, b):
    assert _h(a) != _h(b)


def test_a_slot_read_but_never_written_is_zero():
    assert _h("x = g + v\nupdate = x * lr") == _h("x = g + 0.0\nupdate = x * lr")


# ---- liveness and dead-code elimination -------------------------------------------------------


def test_dead_code_elimination_keeps_state_that_reaches_update_later():
    p = Program.parse(LION_TEXT)
    assert p.dead_code_eliminated() == p
    assert p.live_slots == ("m",)


def test_dead_code_elimination_drops_unused_state_and_temporaries():
    p = Program.parse(
        "v = interp(g, v, 0.9)\n"  # written, never read by anything live: dead across steps
        "k = cos(w)\n"  # never read
        "c = interp(g, m, 0.9)\n"
        "u = exp(w)\n"  # overwritten before it is read: dead
        "u = sign(c)\n"
        "update = u * lr\n"
        "m = interp(g, m, 0.99)\n"
    )
    assert p.dead_code_eliminated() == seeds.lion()
    assert p.structural_hash() == seeds.lion().structural_hash()
    assert p.slots == ("m", "v") and p.live_slots == ("m",)


def test_state_that_feeds_live_state_is_live():
    p = Program.parse(
        "v = interp(g, v, 0.5)\nm = interp(v, m, 0.9)\nupdate = m * lr\n"
    )
    assert p.dead_code_eliminated() == p
    assert p.live_slots == ("m", "v")


@pytest.mark.parametrize("text, reads", [
    ("update = g * lr", True),
    ("update = g * 0.01", False),
    ("lr = arctanh(t)\nupdate = g * lr", False),  # reads its own value, not the input
    ("a = lr * 2.0\nlr = a * 3.0\nupdate = g * lr", True),  # the input, through a
    ("d = lr * 2.0\nupdate = g * 0.1", False),  # dead code reads it
    ("u = g * 0.1\nupdate = u * 2.0\nm = m * lr", False),  # a slot nothing reads
    ("update = g * m\nm = interp(g, lr, 0.1)", True),  # reaches update at the next step
])
def test_reads_lr_is_whether_the_given_learning_rate_can_change_the_update(text, reads):
    assert Program.parse(text).reads_lr is reads


def test_a_read_before_write_is_placed_on_the_argument_not_a_same_named_function():
    with pytest.raises(ProgramError) as err:
        Program.parse("x = g * lr\nupdate = mul(mul, x)")
    assert (err.value.line, err.value.column) == (2, 14)
    assert "variable 'mul' is read before it is written" in str(err.value)


def test_reads_at_start_are_the_names_read_before_the_step_writes_them():
    flow = Program.parse("a = m * 0.9\nm = g * 1.0\nb = m + a\nd = v * 2.0\nupdate = b * lr\n"
                         ).dataflow
    assert flow.reads_at_start() == {"m", "g", "v", "lr"}  # m read once before it is written
    assert flow.reads_at_start(live_only=True) == {"m", "g", "lr"}  # d is dead: v unread
    written_first = Program.parse("lr = g * 2.0\nupdate = g * lr\n")
    assert written_first.dataflow.reads_at_start() == {"g"} and not written_first.reads_lr
