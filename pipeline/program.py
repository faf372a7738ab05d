"""Program: an optimizer as an immutable list of statements.

A program is the body of ``train(w, g, m, v, lr, t) -> update``::

    c = interp(g, m, 0.9)
    u = sign(c)
    update = u * lr
    m = interp(g, m, 0.99)

* Inputs: ``w`` (the weight), ``g`` (its gradient), ``lr`` (the learning rate, a scalar),
  ``t`` (the 1-based step count, a scalar). Inputs may be reassigned (``lr = lr * 0.001``).
* State slots ``m``, ``v``, ``state2``, ``state3``: zero at step 1; the value a slot holds at
  the end of the program is its value at the next step. Slots always have ``w``'s shape (a
  scalar assigned to a slot is broadcast).
* Output: the final value of ``update``; the runner does ``w = w - update``.

Text form: one statement per line, either ``name = fn(arg, ...)`` or ``name = a <op> b``
with ``<op>`` one of ``+ - * /``; arguments are variables or float literals. ``#`` starts a
comment. The text is read by the small hand-written parser below; nothing is evaluated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ops import OPS, Op

__all__ = [
    "IGNORES_LR",
    "INPUTS",
    "OUTPUT",
    "STATE_SLOTS",
    "Program",
    "ProgramError",
    "Statement",
    "finite_literal",
    "format_number",
]

INPUTS: tuple[str, ...] = ("w", "g", "lr", "t")
SCALAR_INPUTS: frozenset[str] = frozenset({"lr", "t"})
STATE_SLOTS: tuple[str, ...] = ("m", "v", "state2", "state3")
OUTPUT = "update"

# Programs run in float32: a literal is finite when float32 holds it (|x| below the midpoint
# of float32's max and 2**128; from there on it rounds to inf). 1e300 is a finite float but
# an inf in every executor (and a TF conversion error in some ops), so it is refused.
F32_LIMIT = 2.0**128 - 2.0**103

MAX_TEXT_CHARS = 1_000_000
MAX_LINE_CHARS = 10_000
MAX_STATEMENTS = 10_000

Arg = str | float


class ProgramError(ValueError):
    """A program that is not well formed. Says where (line, column; 1-based) and what."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        self.message = message
        self.line = line
        self.column = column
        where = ""
        if line is not None:
            where = f"line {line}" + (f", column {column}" if column is not None else "") + ": "
        super().__init__(where + message)


def finite_literal(value: float) -> bool:
    """Whether ``value`` is finite in float32, the precision programs run in."""
    return abs(value) < F32_LIMIT


def format_number(value: float) -> str:
    """The text of a literal: ``repr`` of the float, which parses back to the same float."""
    return repr(float(value))


# What a user is told wherever a rule that never reads ``lr`` is loaded, shown or exported.
IGNORES_LR = ("this rule never reads lr: its step size is built in, and the learning rate "
              "given to it (learning_rate=, a schedule) has no effect")

@dataclass(frozen=True, slots=True)
class Statement:
    """``target = op(*args)``; each arg is a variable name (str) or a literal (float)."""

    target: str
    op: str
    args: tuple[Arg, ...]

    def to_text(self) -> str:
        op = OPS[self.op]
        texts = [a if isinstance(a, str) else format_number(a) for a in self.args]
        if op.infix is not None:
            return f"{self.target} = {texts[0]} {op.infix} {texts[1]}"
        return f"{self.target} = {self.op}({', '.join(texts)})"

    def reads(self) -> tuple[str, ...]:
        return tuple(a for a in self.args if isinstance(a, str))


# ---- the parser ----------------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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
        m = _IDENT.match(self.text, self.pos)
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
    """One statement: ``target = fn(args)`` or ``target = a <sym> b``."""
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
            if len(args) != op.arity:
                raise line.error(
                    f"{op.name} takes {op.arity} argument(s), got {len(args)}", name_pos
                )
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


def _check_args(op: Op, args: Sequence[tuple[Arg, int]], line: _Line | None) -> None:
    for i, (arg, pos) in enumerate(args):
        if isinstance(arg, float) and not op.const_ok[i]:
            msg = f"argument {i + 1} of {op.name} must be a variable, not a number"
            raise line.error(msg, pos) if line else ProgramError(msg)
    if args and all(isinstance(a, float) for a, _ in args):
        msg = f"{op.name} of numbers only is a constant: write the number instead"
        raise line.error(msg, args[0][1]) if line else ProgramError(msg)


def _check_dataflow(statements: Sequence[Statement], lines: Sequence[_Line] | None) -> None:
    """Every read is of an input, a state slot or an earlier assignment; update is assigned."""
    defined = set(INPUTS) | set(STATE_SLOTS)
    for i, st in enumerate(statements):
        line = lines[i] if lines else None
        for arg in st.args:
            if isinstance(arg, str) and arg not in defined:
                msg = f"variable {arg!r} is read before it is written"
                if line is None:
                    raise ProgramError(msg + f" (statement {i + 1})")
                rhs = line.text.split("=", 1)[1]
                col = next((m for m in _IDENT.finditer(rhs) if m.group() == arg), None)
                pos = len(line.text.split("=", 1)[0]) + 1 + (col.start() if col else 0)
                raise line.error(msg, pos)
        defined.add(st.target)
    if OUTPUT not in defined:
        raise ProgramError(f"the program never assigns {OUTPUT!r}")


# ---- the value -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """An optimizer program: an immutable, hashable tuple of statements.

    Build one with :meth:`parse` or from statements; both validate. Derived facts
    (liveness, the structural hash) are computed once and cached on the value.
    """

    statements: tuple[Statement, ...]
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.statements, tuple):
            object.__setattr__(self, "statements", tuple(self.statements))
        if len(self.statements) > MAX_STATEMENTS:
            raise ProgramError(
                f"program has {len(self.statements)} statements; at most {MAX_STATEMENTS}"
            )
        for st in self.statements:
            if not isinstance(st, Statement):
                raise ProgramError(f"a statement must be a Statement, got {type(st).__name__}")
            for name in (st.target, *(a for a in st.args if isinstance(a, str))):
                if not _IDENT.fullmatch(name) or name.startswith("__"):
                    raise ProgramError(f"not a variable name: {name!r}")
            for a in st.args:
                if not isinstance(a, str | float | int) or isinstance(a, bool):
                    raise ProgramError(f"an argument is a name or a float, got {a!r}")
            op = OPS.resolve(st.op)
            if op is None or op.name != st.op:
                raise ProgramError(f"unknown function {st.op!r}")
            if len(st.args) != op.arity:
                raise ProgramError(f"{op.name} takes {op.arity} argument(s), got {len(st.args)}")
            _check_args(op, [(a, 0) for a in st.args], None)
            for a in st.args:
                if not isinstance(a, str) and not finite_literal(a):
                    raise ProgramError(f"literal {a!r} is not finite in float32")
        _check_dataflow(self.statements, None)

    # -- text --

    @classmethod
    def parse(cls, text: str) -> Program:
        """Parse program text; raises :class:`ProgramError` with line and column."""
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
        statements: list[Statement] = []
        lines: list[_Line] = []
        for lineno, raw in enumerate(raws, start=1):
            raw = raw.removesuffix("\r")
            if len(raw) > MAX_LINE_CHARS:
                raise ProgramError(
                    f"line is {len(raw)} characters; at most {MAX_LINE_CHARS}", lineno
                )
            body = raw.split("#", 1)[0]
            if not body.strip():
                continue
            line = _Line(body, lineno)
            target, op, args, _ = _parse_line(line)
            _check_args(op, args, line)
            statements.append(Statement(target, op.name, tuple(a for a, _ in args)))
            lines.append(line)
        _check_dataflow(statements, lines)
        return cls(tuple(statements))

    def to_text(self) -> str:
        return "\n".join(st.to_text() for st in self.statements) + "\n"

    def __str__(self) -> str:
        return self.to_text()

    def __len__(self) -> int:
        return len(self.statements)

    # -- dataflow --

    @property
    def _flow(self) -> _Dataflow:
        flow = self._cache.get("flow")
        if flow is None:
            flow = self._cache["flow"] = _Dataflow(self.statements)
        return flow

    @property
    def live_statements(self) -> frozenset[int]:
        """Indices of statements that reach ``update`` now or at a later step."""
        return self._flow.live

    @property
    def live_slots(self) -> tuple[str, ...]:
        """State slots whose value can reach ``update`` (now or at a later step)."""
        return self._flow.live_slots

    @property
    def slots(self) -> tuple[str, ...]:
        """State slots the program reads or writes, in slot order."""
        slots = self._cache.get("slots")
        if slots is None:
            used = {st.target for st in self.statements}
            used.update(a for st in self.statements for a in st.reads())
            slots = self._cache["slots"] = tuple(s for s in STATE_SLOTS if s in used)
        return slots

    @property
    def reads_lr(self) -> bool:
        """Whether the learning rate it is given can change the update: a live statement
        reads the input ``lr`` (not a value the program wrote to that name)."""
        live, written = self.live_statements, set()
        for i, st in enumerate(self.statements):
            if i in live and "lr" in st.reads() and "lr" not in written:
                return True
            written.add(st.target)
        return False

    def with_lr_scale(self, factor: float) -> Program:
        """The same rule run at learning rate ``lr * factor`` (prepends ``lr = lr * factor``)."""
        if factor == 1.0:
            return self
        return Program((Statement("lr", "mul", ("lr", float(factor))), *self.statements))

    def dead_code_eliminated(self) -> Program:
        """The same optimizer without statements that never reach ``update``."""
        live = self.live_statements
        if len(live) == len(self.statements):
            return self
        return Program(tuple(st for i, st in enumerate(self.statements) if i in live))

    def structural_hash(self) -> str:
        """A hex digest of the dataflow to ``update`` and the live state.

        Equal for programs that compute the same expression graph: variable names (slot
        names too), statement order and dead code are ignored; constants, ops and argument
        order matter. A slot that is read but never written is the constant 0.
        """
        h = self._cache.get("shash")
        if h is None:
            h = self._cache["shash"] = self._flow.digest()
        return h

    def __getstate__(self):
        return {"statements": self.statements}

    def __setstate__(self, state):
        object.__setattr__(self, "statements", state["statements"])
        object.__setattr__(self, "_cache", {})


class _Dataflow:
    """Single-assignment view of a program: liveness across steps and the canonical hash."""

    def __init__(self, statements: Sequence[Statement]):
        self.statements = statements
        last: dict[str, int] = {}
        deps: list[tuple[int | str | float, ...]] = []
        # deps entries: int = index of the defining statement; str = input/slot at step
        # start; float = literal.
        for st in statements:
            d: list[int | str | float] = []
            for a in st.args:
                if isinstance(a, float):
                    d.append(a)
                else:
                    d.append(last.get(a, a))
            deps.append(tuple(d))
            last[st.target] = len(deps) - 1
        self.deps = deps
        self.final = last  # name -> index of its last writer
        # Liveness to a fixed point: slots read by live statements make their last writer live.
        live: set[int] = set()
        live_slots: set[str] = set()
        stack = [last[OUTPUT]] if OUTPUT in last else []
        while stack:
            i = stack.pop()
            if i in live:
                continue
            live.add(i)
            for d in deps[i]:
                if isinstance(d, int):
                    stack.append(d)
                elif isinstance(d, str) and d in STATE_SLOTS and d not in live_slots:
                    live_slots.add(d)
                    if d in last:
                        stack.append(last[d])
        self.live = frozenset(live)
        self.live_slots = tuple(s for s in STATE_SLOTS if s in live_slots)

    def _slot_order(self) -> list[str]:
        """Written slots in first-use order of a DFS from ``update`` (argument order)."""
        order: list[str] = []
        seen_slots: set[str] = set()
        visited: set[int] = set()
        roots = [self.final[OUTPUT]]
        k = 0
        while True:
            stack = list(reversed(roots))
            while stack:
                i = stack.pop()
                if i in visited:
                    continue
                visited.add(i)
                for d in reversed(self.deps[i]):
                    if isinstance(d, int):
                        stack.append(d)
                # slots are numbered in argument order, left to right
                for d in self.deps[i]:
                    if isinstance(d, str) and d in self.final and d in STATE_SLOTS:
                        if d not in seen_slots:
                            seen_slots.add(d)
                            order.append(d)
            if k >= len(order):
                return order
            roots = [self.final[order[k]]]
            k += 1

    def digest(self) -> str:
        order = self._slot_order()
        slot_ids = {s: n for n, s in enumerate(order)}
        memo: dict[int, str] = {}

        def leaf(d: int | str | float) -> str:
            if isinstance(d, float):
                return "c" + format_number(d)
            if isinstance(d, int):
                return memo[d]
            if d in STATE_SLOTS:
                return f"s{slot_ids[d]}" if d in slot_ids else "c0.0"  # never written: zero
            return "i" + d

        # deps point to earlier statements, so index order is a topological order.
        for i in sorted(self.live):
            st = self.statements[i]
            parts = ",".join(leaf(d) for d in self.deps[i])
            memo[i] = hashlib.sha256(f"{st.op}({parts})".encode()).hexdigest()[:32]
        outputs = [leaf(self.final[OUTPUT])] + [leaf(self.final[s]) for s in order]
        return hashlib.sha256("|".join(outputs).encode()).hexdigest()
