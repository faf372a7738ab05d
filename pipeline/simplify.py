"""Simplification: turn a raw search winner into a short, readable program.

:func:`simplify` repeats three kinds of passes until none changes the program:

* ``dead_code`` - statements that reach neither ``update`` nor the next step's state (a slot
  written and never read, a slot overwritten before it is read), and slots read but never
  written, which are the constant 0 (the literal is then propagated).
* ``algebra`` - the rewrites of :data:`pipeline.algebra.RULES` (constant folding,
  identities, ``x / sqrt(square(x)) -> sign(x)``, merged interps, ...).
* ``low_effect`` and ``deletion_evolution`` (only with a ``fitness``) - a statement is
  removed, its variable replaced by one of its inputs, when the fitness stays within
  ``tolerance`` of the original's (either way: a big gain is a big effect too); then a
  short seeded round of random multi-statement deletions, accepted under the same test.
  Each round scores all its candidates in one ``fitness`` call (a batched evaluator trains
  them together), and of those within tolerance keeps the one closest to the original.

Every exact change is verified with :func:`same_behaviour` (both programs run with the NumPy
executor for several steps on fixed random inputs) and rejected if the outputs differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.algebra import RULES, Rule, normalize_constants, rewrites
from pipeline.execute import numpy_step
from pipeline.fitness import finite_or_worst
from pipeline.graph import Graph
from pipeline.program import Program
from pipeline.statement import STATE_SLOTS, format_number

__all__ = ["BehaviourCheck", "Change", "SimplifyResult", "same_behaviour", "simplify"]

# Programs -> their fitnesses, higher is better (``pipeline.evolve.evaluate_each`` turns a
# one-program fitness into one).
Fitness = Callable[[Sequence[Program]], Sequence[float]]


@dataclass(frozen=True)
class BehaviourCheck:
    """How two programs are compared: ``steps`` steps on each of ``shapes``, fixed inputs.

    ``w`` and ``g`` are fresh standard-normal draws at each step (the same for both
    programs); the updates must agree to ``rtol``/``atol`` (NaN matches NaN).
    """

    steps: int = 6
    shapes: tuple[tuple[int, ...], ...] = ((9,), (4, 3))
    seed: int = 0
    lr: float = 0.05
    rtol: float = 1e-4
    atol: float = 1e-7


def _updates(program: Program, check: BehaviourCheck, lr: float) -> list[np.ndarray]:
    rng = np.random.default_rng(check.seed)
    out = []
    for shape in check.shapes:
        state: dict = {}
        for t in range(1, check.steps + 1):
            w = rng.normal(size=shape).astype(np.float32)
            g = rng.normal(size=shape).astype(np.float32)
            update, state = numpy_step(program, w, g, state, lr, t)
            out.append(np.asarray(update, np.float64))
    return out


def same_behaviour(
    a: Program, b: Program, *, check: BehaviourCheck = BehaviourCheck(), lr_scale: float = 1.0
) -> bool:
    """Whether ``b`` at learning rate ``lr * lr_scale`` gives ``a``'s updates at ``lr``."""
    ua = _updates(a, check, check.lr)
    ub = _updates(b, check, check.lr * lr_scale)
    return all(
        np.allclose(x, y, rtol=check.rtol, atol=check.atol, equal_nan=True)
        for x, y in zip(ua, ub, strict=True)
    )


@dataclass(frozen=True)
class Change:
    """One accepted change: the pass that made it, what it did, the length after it."""

    pass_name: str
    description: str
    length_after: int


@dataclass(frozen=True)
class SimplifyResult:
    """The simplified program and how it was obtained.

    ``program`` at learning rate ``lr * lr_scale`` behaves like ``original`` at ``lr``
    (``lr_scale`` is 1 unless ``absorb_lr_scale`` was asked for). Fitnesses are None
    without a fitness function; ``fitness_after`` is measured before any scale is absorbed.
    """

    program: Program
    original: Program
    changes: tuple[Change, ...]
    fitness_before: float | None = None
    fitness_after: float | None = None
    lr_scale: float = 1.0

    @property
    def length_before(self) -> int:
        return len(self.original)

    @property
    def length_after(self) -> int:
        return len(self.program)

    def summary(self) -> str:
        lines = [f"{self.length_before} -> {self.length_after} statements"]
        if self.fitness_before is not None:
            lines[0] += f", fitness {self.fitness_before:.6g} -> {self.fitness_after:.6g}"
        if self.lr_scale != 1.0:
            lines[0] += f", run at lr * {format_number(self.lr_scale)}"
        lines += [f"  [{c.pass_name}] {c.description}" for c in self.changes]
        return "\n".join(lines)


class _Run:
    """The state of one simplify call (a local, never shared)."""

    def __init__(self, program: Program, fitness: Fitness | None, tolerance: float,
                 check: BehaviourCheck, rng: np.random.Generator):
        self.program = program
        self.fitness = fitness
        self.tolerance = tolerance
        self.check = check
        self.rng = rng
        self.changes: list[Change] = []
        self.seen: set[Program] = {program}  # never go back: no rewrite cycles
        self.lr_scale = 1.0
        self.scored: dict[Program, float] = {}  # each program is trained once per call
        self.f0 = self.score([program])[0] if fitness else None

    def score(self, programs: Sequence[Program]) -> list[float]:
        new = list(dict.fromkeys(p for p in programs if p not in self.scored))
        if new:
            fs = [float(f) for f in self.fitness(new)]
            if len(fs) != len(new):
                raise ValueError(f"fitness returned {len(fs)} values for {len(new)} programs")
            self.scored.update((p, finite_or_worst(f)) for p, f in zip(new, fs, strict=True))
        return [self.scored[p] for p in programs]

    def accept(self, pass_name: str, program: Program, description: str) -> None:
        self.program = program
        self.seen.add(program)
        self.changes.append(Change(pass_name, description, len(program)))

    def closest(self, candidates: list[tuple[Program, str]]) -> tuple[float, Program, str] | None:
        """Of ``candidates`` (scored together), the first closest to the original's fitness
        within tolerance, or None."""
        best = None
        fs = self.score([new for new, _ in candidates])
        for f, (new, note) in zip(fs, candidates, strict=True):
            if abs(f - self.f0) <= self.tolerance and (
                    best is None or abs(f - self.f0) < abs(best[0] - self.f0)):
                best = (f, new, note)
        return best

    # -- passes; each returns whether it changed the program --

    def dead_code(self) -> bool:
        p = self.program
        q = p.dead_code_eliminated()
        changed = False
        if q != p and same_behaviour(p, q, check=self.check):
            live = p.live_statements
            dropped = [st.to_text() for i, st in enumerate(p.statements) if i not in live]
            self.accept("dead_code", q, f"removed {len(dropped)} dead: {'; '.join(dropped)}")
            changed = True
        graph = Graph.from_program(self.program)
        written = dict(graph.outputs)
        read = {a for i in graph.live() for a in graph.nodes[i].args if isinstance(a, str)}
        for slot in (s for s in STATE_SLOTS if s in read and s not in written):
            new = normalize_constants(graph.substitute(slot, 0.0)).to_program()
            if new is not None and same_behaviour(self.program, new, check=self.check):
                self.accept("dead_code", new, f"slot {slot} is read but never written: it is 0")
                graph = Graph.from_program(new)
                changed = True
        return changed

    def algebra(self, rules: tuple[Rule, ...]) -> bool:
        changed = False
        while True:
            p = self.program
            for rw in rewrites(p, rules):
                if len(rw.program) > len(p) or rw.program in self.seen:
                    continue
                if not same_behaviour(p, rw.program, check=self.check, lr_scale=rw.lr_scale):
                    continue
                note = f"{rw.rule.name} at `{p.statements[rw.index].to_text()}`"
                if rw.lr_scale != 1.0:
                    note += f" (lr scaled by {format_number(rw.lr_scale)})"
                    self.lr_scale *= rw.lr_scale
                self.accept("algebra", rw.program, note)
                changed = True
                break
            else:
                return changed

    def _deletions(self, program: Program) -> list[tuple[Program, str]]:
        graph = Graph.from_program(program)
        out = []
        for i in graph.live():
            node = graph.nodes[i]
            for arg in dict.fromkeys(node.args):
                new = graph.replace(i, arg).to_program()
                if new is not None and len(new) < len(program):
                    name = arg if isinstance(arg, str) else (
                        format_number(arg) if isinstance(arg, float) else graph.nodes[arg].name)
                    out.append((new, f"`{program.statements[i].to_text()}` -> its input {name}"))
        return out

    def low_effect(self) -> bool:
        changed = False
        while (best := self.closest(self._deletions(self.program))) is not None:
            f, new, note = best
            self.accept("low_effect", new, f"{note}: fitness {f:.6g} (original {self.f0:.6g})")
            changed = True
        return changed

    def _random_deletions(self, steps: int) -> list[tuple[Program, str]]:
        """Up to ``steps`` seeded deletions of 1-3 statements each from the current program."""
        program = self.program
        base = Graph.from_program(program)  # immutable: each deletion starts from it
        live = base.live()
        out = []
        for _ in range(steps if len(live) > 1 else 0):
            graph = base
            k = int(self.rng.integers(1, min(3, len(live) - 1) + 1))
            picked = sorted(self.rng.choice(live, size=k, replace=False).tolist(), reverse=True)
            texts = []
            for i in picked:
                args = graph.nodes[i].args
                arg = args[int(self.rng.integers(len(args)))] if args else None
                if arg is None:
                    break
                texts.append(program.statements[i].to_text())
                graph = graph.replace(i, arg)
            else:
                new = graph.to_program()
                if new is not None and len(new) < len(program):
                    out.append((new, f"deleted {'; '.join(texts)}"))
        return out

    def deletion_evolution(self, steps: int) -> bool:
        best = self.closest(self._random_deletions(steps))
        if best is None:
            return False
        f, new, note = best
        self.accept("deletion_evolution", new,
                    f"{note}: fitness {f:.6g} (original {self.f0:.6g})")
        return True


def simplify(
    program: Program,
    fitness: Fitness | None = None,
    *,
    tolerance: float = 1e-3,
    rng: np.random.Generator | int = 0,
    evolve_steps: int = 30,
    absorb_lr_scale: bool = False,
    check: BehaviourCheck = BehaviourCheck(),
    rules: tuple[Rule, ...] = RULES,
    max_rounds: int = 50,
) -> SimplifyResult:
    """Simplify ``program`` by dead-code, algebra and (with ``fitness``) low-effect passes.

    Args:
        program: the program to simplify.
        fitness: programs -> their fitnesses, higher is better (called once per round
            with all that round's candidates); enables the low-effect passes, which accept
            a removal when ``|fitness(new) - fitness(program)| <= tolerance``.
        tolerance: the fitness a removal may cost, in the fitness's units.
        rng: a Generator or a seed for the deletion-only evolution.
        evolve_steps: random deletions tried (together) per round.
        absorb_lr_scale: also drop positive scales of the update (``lr_scale`` reports them);
            applied after everything else, so fitness comparisons stay at the same lr.
        check: how exact changes are verified (:func:`same_behaviour`).
        rules: the algebra rule table (a rewrite that fails the check is rejected).
        max_rounds: a bound on the rounds of passes (each round runs them all once).
    """
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    exact_rules = tuple(r for r in rules if r.exact)
    run = _Run(program, fitness, tolerance, check, gen)
    for _ in range(max_rounds):
        changed = run.dead_code()
        changed |= run.algebra(exact_rules)
        if fitness is not None:
            changed |= run.low_effect()
            changed |= run.deletion_evolution(evolve_steps)
        if not changed:
            break
    fitness_after = run.score([run.program])[0] if fitness is not None else None
    if absorb_lr_scale:
        for _ in range(max_rounds):
            if not (run.algebra(rules) | run.dead_code()):
                break
    return SimplifyResult(
        program=run.program,
        original=program,
        changes=tuple(run.changes),
        fitness_before=run.f0,
        fitness_after=fitness_after,
        lr_scale=run.lr_scale,
    )
