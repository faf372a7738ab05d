"""Hostile and broken program text: our own ProgramError, fast, and nothing executed.

Every text below tries, were it evaluated as Python, to create a marker file; the tests
assert the parser refuses it with :class:`ProgramError` in under half a second and that the
marker never appears.
"""

from __future__ import annotations

import time

import pytest

from pipeline.abstract import Rejection, check
from pipeline.program import Program
from pipeline.statement import MAX_STATEMENTS, ProgramError, Statement

FAST_S = 0.5


def _payload(marker) -> str:
    return f"open({str(marker)!r}, 'w').write('pwned')"


def _texts(marker) -> dict[str, str]:
    code = _payload(marker)
    return {
        "python statement": f"import os\nupdate = g * lr\nos.system('touch {marker}')\n",
        "python expression": f"update = {code}\n",
        "python assignment": f"update = g * lr if {code} else g\n",
        "exec call": f"update = exec({code!r})\n",
        "eval call": f"update = eval({code!r})\n",
        "dunder import": f"update = __import__('os').system('touch {marker}')\n",
        "dunder name": "__builtins__ = g * lr\nupdate = g\n",
        "dunder argument": "update = g * __class__\n",
        "attribute access": "update = g.__class__.__mro__\n",
        "attribute call": "update = sign(g).numpy()\n",
        "dotted function": "update = os.system(g)\n",
        "lambda": f"update = (lambda: {code})()\n",
        "lambda argument": "update = add(g, lambda x: x)\n",
        "semicolon": f"update = g * lr; {code}\n",
        "semicolon second statement": "update = g * lr; m = g\n",
        "keyword argument": "update = clip(g, c=1.0)\n",
        "string literal": f"update = g * {code!r}\n",
        "subscript": "update = g[0]\n",
        "unknown op": "update = frobnicate(g)\n",
        "unknown op alias case": "update = SIGN(g)\n",
        "nested call": "update = sign(sign(g))\n",
        "deep parentheses": "update = " + "(" * 4000 + "g" + ")" * 4000 + "\n",
        "deep calls": "update = " + "sign(" * 1900 + "g" + ")" * 1900 + "\n",
        "huge number": "update = g * 1e999\n",
        "huge integer": "update = g * " + "9" * 5000 + "\n",
        "number beyond float32": "update = g * 1e39\n",
        "negative beyond float32": "update = g * -3.5e38\n",
        "inf and nan": "x = g * inf\nupdate = x * nan\n",
        "hex number": "update = g * 0x10\n",
        "underscore number": "update = g * 1_000\n",
        "complex number": "update = g * 1j\n",
        "multi-megabyte line": "update = g * lr " + "#" * 3_000_000 + "\n",
        "long line": "update = g * " + "a" * 9_990 + "\n",
        "10001 statements": "update = g * lr\n" * (MAX_STATEMENTS + 1),
        "NUL byte": "update = g * lr\x00\n",
        "NUL in comment": "update = g * lr  # \x00 hidden\n",
        "NUL in name": "upd\x00ate = g * lr\n",
        "fullwidth digit": "update = g * \uff11\n",
        "fullwidth digit after dot": "update = g * 0.\uff15\n",
        "arabic-indic digits": "update = g * \u0663\u0664\n",
        "devanagari digits": "update = g * \u0969.\u096b\n",
        "digit after sign": "update = g * -\uff11\n",
        "superscript digit": "update = g * \u00b2\n",
        "cyrillic a in target": "upd\u0430te = g * lr\n",
        "cyrillic a in argument": "update = \u0430 * lr\n",
        "fullwidth letters": "update = \uff47 * lr\n",
        "greek op name": "update = sign(g) * l\u03b1\n",
        "lone carriage return": "update = g * lr\rupdate = g\n",
        "carriage return hides a line": "update = g * 1e30\r# a harmless comment\n",
        "carriage return mid statement": "update = g *\r lr\n",
        "form feed": "update = g * lr\x0cupdate = g * 2.0\n",
        "vertical tab": "update = g * lr\x0bupdate = g * 2.0\n",
        "unicode line separator": "update = g * lr\u2028update = g * 2.0\n",
        "paragraph separator in comment": "update = g * lr # \u2029update = g * 1e30\n",
        "next line char": "update = g * lr\x85update = g * 2.0\n",
        "bidi override in comment": "update = g * lr # \u202e 0.1 * \u202c\n",
        "non-breaking space": "update = g\u00a0* lr\n",
        "not a str": b"update = g * lr\n",
    }


@pytest.fixture()
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a hostile program text was executed"


@pytest.mark.parametrize("name", sorted(_texts("m")))
def test_hostile_text_is_a_program_error_fast_and_never_executed(name, marker):
    text = _texts(marker)[name]
    start = time.process_time()  # this process's CPU: other xdist workers share the cores
    with pytest.raises(ProgramError) as err:
        Program.parse(text)
    elapsed = time.process_time() - start
    assert elapsed < FAST_S, f"{name}: {elapsed:.3f}s"
    assert str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "digit", ["\uff11", "\u0661", "\u0967", "\u09e7", "\u0e51", "\U0001d7cf", "\u00b9"]
)
def test_unicode_digits_are_not_numbers(digit):
    """float() accepts many of these ("１" is 1.0); the parser takes ASCII digits only."""
    for text in (f"update = g * {digit}", f"update = g * 1{digit}", f"update = g * 0.{digit}",
                 f"update = g * 1e{digit}", f"update = clip(g, -{digit})"):
        with pytest.raises(ProgramError):
            Program.parse(text)


def test_error_says_where_a_forbidden_character_is():
    with pytest.raises(ProgramError) as err:
        Program.parse("m = g * lr\nupdate = m\r* 2.0\n")
    assert (err.value.line, err.value.column) == (2, 11)
    with pytest.raises(ProgramError) as err:
        Program.parse("update = g * lr  # \x00\n")
    assert (err.value.line, err.value.column) == (1, 20)


def test_windows_line_endings_and_unicode_comments_are_still_fine():
    p = Program.parse("# \u03b2\u2081 = 0.9, a comment in Greek\r\nm = interp(g, m, 0.9)\r\n"
                      "u = sign(m)  # \u2192 \u00b11\r\nupdate = u * lr\r\n")
    assert p == Program.parse("m = interp(g, m, 0.9)\nu = sign(m)\nupdate = u * lr\n")


def test_the_largest_program_still_parses():
    text = "update = g * lr\n" * MAX_STATEMENTS
    # This process's CPU time, not the wall clock: under pytest-xdist another worker's
    # end-to-end test shares the cores (a wall-clock bound failed at 3.2 s on a loaded
    # machine; the parse itself takes about 0.2 s of CPU).
    start = time.process_time()
    assert len(Program.parse(text)) == MAX_STATEMENTS
    assert time.process_time() - start < 2.0


@pytest.mark.parametrize(
    ("statements", "reason"),
    [
        ((Statement("x.y", "mul", ("g", "lr")), Statement("update", "sign", ("g",))),
         Rejection.BAD_TARGET),
        ((Statement("__class__", "mul", ("g", "lr")), Statement("update", "sign", ("g",))),
         Rejection.BAD_TARGET),
        ((Statement("upd\u0430te", "mul", ("g", "lr")), Statement("update", "sign", ("g",))),
         Rejection.BAD_TARGET),
        ((Statement("update", "mul", ("g", 1e300)),), Rejection.NON_FINITE_LITERAL),
        ((Statement("update", "mul", ("g", -1e39)),), Rejection.NON_FINITE_LITERAL),
        ((Statement("update", "eval", ("g",)),), Rejection.UNKNOWN_OP),
    ],
)
def test_constructing_what_text_could_not_say_is_refused_too(statements, reason):
    """Program(statements) refuses names and literals its text form could not round-trip;
    abstract execution rejects them with a reason."""
    assert check(statements) is reason
    with pytest.raises(ProgramError):
        Program(statements)


@pytest.mark.parametrize("arg", [None, True, [1.0], "1.0", b"g"])
def test_an_argument_that_is_not_a_name_or_a_number_is_refused(arg):
    with pytest.raises(ProgramError):
        Program((Statement("update", "add", ("g", arg)),))


def test_float32_max_is_a_literal_and_the_next_float32_is_not():
    assert Program.parse("update = g * 3.4028234663852886e+38").statements[0].args[1] > 3e38
    with pytest.raises(ProgramError, match="out of range"):
        Program.parse("update = g * 3.4028236e+38")
