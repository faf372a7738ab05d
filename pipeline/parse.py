"""The text form of a program, read by a small hand-written parser (nothing is evaluated).

One statement per line, either ``name = fn(arg, ...)`` or ``name = a <op> b`` with ``<op>``
one of ``+ - * /``; arguments are variables or float literals. ``#`` starts a comment.
:func:`parse_statements` turns text into statements or raises a
:class:`~pipeline.statement.ProgramError` that names the line and column; well-formedness
beyond the syntax is :func:`~pipeline.statement.find_problem`'s, placed back on the text.
"""

from __future__ import annotations

import re

from ops import OPS, Op
from pipeline.statement import (
    MAX_STATEMENTS,
    NAME,
    Arg,
    ProgramError,
    Statement,
    find_problem,
    finite_literal,
)

__all__ = ["MAX_LINE_CHARS", "MAX_TEXT_CHARS", "parse_statements"]

MAX_TEXT_CHARS = 1_000_000
MAX_LINE_CHARS = 10_000

# ASCII digits only: ``\d`` and ``float()`` also take other scripts' digits ("１", "٣").
_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DIGITS = frozenset("0123456789")
_NUMBER_TAIL = re.compile(r"[A-Za-z0-9_.]")
# Characters refused anywhere, comments included: controls but tab and newline (and the
# carriage return of a CRLF), Unicode line/paragraph separators (Python's str.splitlines
# breaks lines there, editors may not) and bidirectional overrides, which can make text
# display otherwise than it parses.
_FORBIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
    "\u202a-\u202e\u2066-\u2069]|\r(?!\n)"
)


class _Line:
    """A cursor over one line of program text."""

    def __init__(self, text: str, lineno: int):
        self.text = text
        self.lineno = lineno
        self.pos = 0

    def error(self, message: str, pos: int | None = None) -> ProgramError:
        return ProgramError(message, self.lineno, (self.pos if pos is None else pos) + 1)

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_end(self) -> bool:
        return self.peek() == ""

    def expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            found = repr(self.peek()) if self.peek() else "end of line"
            raise self.error(f"expected {what}, found {found}")
        self.pos += 1

    def ident(self, what: str) -> tuple[str, int]:
        self.skip_space()
        m = NAME.match(self.text, self.pos)
        if not m:
            found = repr(self.peek()) if self.peek() else "end of line"
            raise self.error(f"expected {what}, found {found}")
        name = m.group()
        if name.startswith("__"):
            raise self.error(f"names may not start with '__': {name!r}")
        start, self.pos = self.pos, m.end()
        return name, start

    def number(self) -> float:
        """A literal with an optional sign, at the cursor (caller checked it starts one)."""
        self.skip_space()
        start = self.pos
        sign = 1.0
        if self.text[self.pos] in "+-":
            sign = -1.0 if self.text[self.pos] == "-" else 1.0
            self.pos += 1
        m = _NUMBER.match(self.text, self.pos)
        if not m:
            raise self.error("malformed number", start)
        end = m.end()
        if end < len(self.text) and _NUMBER_TAIL.match(self.text, end):
            tail = re.match(r"[A-Za-z0-9_.+-]*", self.text[start:]).group()
            raise self.error(f"malformed number {tail!r}", start)
        value = sign * float(m.group())
        if not finite_literal(value):
            raise self.error(f"number out of range: {self.text[start:end]!r}", start)
        self.pos = end
        return value

    def starts_number(self) -> bool:
        c = self.peek()
        if c in _DIGITS or c == ".":
            return True
        if c in ("+", "-"):
            nxt = self.text[self.pos + 1 : self.pos + 2]
            return nxt in _DIGITS or nxt == "."
        return False

    def arg(self) -> tuple[Arg, int]:
        self.skip_space()
        start = self.pos
        if self.starts_number():
            return self.number(), start
        name, start = self.ident("a variable or a number")
        return name, start


def _parse_line(line: _Line) -> tuple[str, Op, list[tuple[Arg, int]], int]:
    """One statement: ``target = fn(args)`` or ``target = a <sym> b``; the op's position."""
    target, _ = line.ident("a variable name to assign")
    line.expect("=", "'='")
    line.skip_space()
    start = line.pos
    if line.starts_number():
        first: tuple[Arg, int] = (line.number(), start)
    else:
        name, name_pos = line.ident("a function call or an expression 'a + b'")
        if line.peek() == "(":
            op = OPS.resolve(name)
            if op is None:
                raise line.error(f"unknown function {name!r}", name_pos)
            line.pos += 1
            args: list[tuple[Arg, int]] = []
            if line.peek() != ")":
                while True:
                    args.append(line.arg())
                    if line.peek() == ",":
                        line.pos += 1
                        continue
                    break
            line.expect(")", "',' or ')'")
            if not line.at_end():
                raise line.error(f"unexpected {line.peek()!r} after the call")
            return target, op, args, name_pos
        first = (name, name_pos)
    sym = line.peek()
    op = OPS.by_infix(sym) if sym else None
    if op is None:
        found = repr(sym) if sym else "end of line"
        if first[0] in OPS.infix_symbols or isinstance(first[0], float) or not sym:
            raise line.error(
                "a statement is 'name = fn(arg, ...)' or 'name = a <op> b' with <op> one of "
                f"{' '.join(OPS.infix_symbols)}; found {found}"
            )
        raise line.error(f"expected one of {' '.join(OPS.infix_symbols)} or '(', found {found}")
    op_pos = line.pos
    line.pos += 1
    second = line.arg()
    if not line.at_end():
        raise line.error(f"unexpected {line.peek()!r}: one operator per statement")
    return target, op, [first, second], op_pos


def _lines(text: str) -> list[tuple[str, int]]:
    """The statement lines of ``text`` (comments, blank lines and CRs removed), numbered."""
    if not isinstance(text, str):
        raise ProgramError(f"program text must be a str, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ProgramError(f"program text has {len(text)} characters; at most {MAX_TEXT_CHARS}")
    bad = _FORBIDDEN.search(text)
    if bad:
        at = bad.start()
        raise ProgramError(
            f"character {text[at]!r} is not allowed: lines end with '\\n' or '\\r\\n'; "
            "no control, line-separator or bidirectional-override characters",
            text.count("\n", 0, at) + 1,
            at - text.rfind("\n", 0, at),
        )
    raws = text.split("\n")
    if len(raws) > MAX_STATEMENTS:  # refuse an oversized program before parsing any of it
        count = 0
        for lineno, raw in enumerate(raws, start=1):
            if raw.split("#", 1)[0].strip():
                count += 1
                if count > MAX_STATEMENTS:
                    raise ProgramError(f"more than {MAX_STATEMENTS} statements", lineno)
    bodies = []
    for lineno, raw in enumerate(raws, start=1):
        raw = raw.removesuffix("\r")
        if len(raw) > MAX_LINE_CHARS:
            raise ProgramError(f"line is {len(raw)} characters; at most {MAX_LINE_CHARS}", lineno)
        body = raw.split("#", 1)[0]
        if body.strip():
            bodies.append((body, lineno))
    return bodies


def parse_statements(text: str) -> tuple[Statement, ...]:
    """The statements of program text; raises :class:`ProgramError` with line and column."""
    statements: list[Statement] = []
    places: list[tuple[_Line, int, list[int]]] = []  # the line, the op's and args' positions
    for body, lineno in _lines(text):
        line = _Line(body, lineno)
        target, op, args, op_pos = _parse_line(line)
        statements.append(Statement(target, op.name, tuple(a for a, _ in args)))
        places.append((line, op_pos, [pos for _, pos in args]))
    problem = find_problem(statements)
    if problem is not None:
        if problem.statement is None:
            raise ProgramError(problem.message)
        line, op_pos, arg_pos = places[problem.statement]
        pos = op_pos if problem.argument is None else arg_pos[problem.argument]
        raise line.error(problem.message, pos)
    return tuple(statements)
