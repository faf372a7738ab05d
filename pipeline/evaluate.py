"""The batched evaluator: train a population of optimizer programs at once, in one TF graph.

Design (see ``evaluate``):

* Every member's model parameters are rows of one ``[P, n_params]`` tensor ``theta``; the
  task's forward pass is written over the population axis, and one ``GradientTape`` on the
  summed loss gives every member's gradient at once. All members share the initialization
  and the data order.
* Programs are data, not code: dead code is dropped, registers 0-8 hold ``w g lr t m v
  state2 state3 update`` and each other name a program assigns gets a register of its own,
  and the batch is encoded as integer arrays (op codes, argument and target rows). A
  register machine interprets them in-graph over a flat register file
  ``[registers x P, n_params]``, one position (statement) after another in a
  ``tf.while_loop``. At each position the members are sorted by op (host side, once per
  segment), so each op runs once on just the rows that use it: one gather per argument,
  the op, one concat and one in-place scatter for all ops. No op runs on rows that do not
  use it. The compiled step loop is cached per task: the number of members, the program
  lengths and the registers they take are all dynamic, so no batch retraces.
* Step constants are hoisted: a live statement whose value depends only on ``lr``, ``t``
  and literals (AdamW's bias correction, ``lr * 0.001``) is the same for every parameter,
  so it is not a position of the machine. The NumPy reference computes its value for every
  step of a segment on the host (vectorized over ``t``, cached per distinct sub-program);
  members with the same values share one row, as all share ``lr`` and ``t``, and each step
  one scatter loads the distinct rows. AdamW's bias correction and ``lr * wd`` are 8 of its
  17 statements (two of them ``power``): hoisting them trains a batch of AdamW mutants
  1.5x faster (measured side by side, 1024 members, smoke proxy).
* Literals are rows too: each distinct literal value of a batch (and each hoisted value
  that is the same at every step, ``lr * wd``) gets one row after the registers, loaded
  once per segment, and a statement reads it like any register. No per-op select between
  a register and a literal runs in the step loop; that select cost a fifth of the step time
  of a mixed batch (measured by removing it, 1024 members, smoke proxy).
* Reductions act per member *and per variable* (as ``ProgramOptimizer`` applies a program
  to each variable): ops with ``axis_arg`` run on each variable's columns with ``axis=(1,)``.
* Hurdles: training runs in segments; at each hurdle point members whose loss is NaN/inf,
  above a cap, or behind the AdamW baseline by a margin stop with a partial score, and the
  survivors are compacted, so the rest of the batch gets cheaper.

Fitness is higher-is-better: ``-val_loss`` for tasks with ``Metric.NEG_VAL_LOSS`` (teacher,
char LM), validation accuracy for ``Metric.VAL_ACCURACY`` (digits, MNIST, CIFAR); a member
whose parameters or validation loss are not finite scores ``WORST``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ops import OPS, Op, Shape
from ops.table import EPS
from pipeline import seeds
from pipeline.execute import step_constant_statements
from pipeline.fitness import WORST, finite_or_worst
from pipeline.program import Program
from pipeline.statement import INPUTS, OUTPUT, STATE_SLOTS, Statement
from pipeline.tasks import Metric, Task, make_task

__all__ = [
    "EvalResult",
    "Hurdles",
    "StopReason",
    "encode",
    "evaluate",
    "default_population",
]

# Register numbering: inputs, slots, ``update``, then one register per other name a program
# assigns. Straight-line code reads the latest value of a name, so a register per name is
# exact; writes to an input name go to a fresh register (inputs are refreshed each step),
# and so does a write to a name bound to a shared row of hoisted constants (see encode).
REGISTERS: tuple[str, ...] = (*INPUTS, *STATE_SLOTS, OUTPUT)
N_FIXED = len(REGISTERS)
REG_W, REG_G, REG_LR, REG_T, REG_UPDATE = 0, 1, 2, 3, N_FIXED - 1
REG_SLOTS = tuple(range(len(INPUTS), len(INPUTS) + len(STATE_SLOTS)))
# Ops sorted by arity, highest first: the rows that need argument j form a prefix.
OP_ORDER: tuple[Op, ...] = tuple(sorted(OPS.values(), key=lambda op: -op.arity))
OP_CODE = {op.name: k for k, op in enumerate(OP_ORDER)}
NOP = len(OP_ORDER)
MAX_ARITY = max(op.arity for op in OP_ORDER)


class StopReason(enum.Enum):
    COMPLETED = "completed"
    NONFINITE = "nonfinite"  # NaN/inf loss or parameters
    LOSS_CAP = "loss_cap"  # loss above cap * initial loss
    HURDLE = "hurdle"  # loss behind the baseline by more than the margin


@dataclass(frozen=True)
class Hurdles:
    """When and why to stop a member early (AutoML-Zero's hurdles).

    Attributes:
        points: fractions of the training steps at which members are checked.
        loss_cap: stop if the recent training loss exceeds ``loss_cap`` x the initial loss.
        baseline_margin: stop if the recent training loss exceeds the baseline's by this
            factor (``loss > (1 + margin) * baseline``); None disables the baseline and its
            extra population member.
        baseline: the baseline program (AdamW, Keras' defaults); trained alongside.
        window: steps averaged for "recent training loss".
    """

    points: tuple[float, ...] = (0.25, 0.5)
    loss_cap: float = 100.0
    baseline_margin: float | None = 1.0
    baseline: Program = seeds.adamw()
    window: int = 10


NO_HURDLES = Hurdles(points=(), loss_cap=math.inf, baseline_margin=None)


@dataclass(frozen=True)
class EvalResult:
    """One program's outcome. ``fitness`` is higher-is-better (see the module doc).

    ``loss_curve`` is the mean training loss over each tenth of the schedule reached.
    """

    fitness: float
    val_loss: float
    val_accuracy: float | None
    steps: int
    stop: StopReason
    loss_curve: tuple[float, ...]


# ---- encoding programs as tensors ------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """A batch of programs as arrays; at each position the members are sorted by op code.

    Register ``r`` of member ``p`` is row ``r * capacity + p`` of the flat register file;
    ``lr`` and ``t`` are the same for every member, so every member reads member 0's row.
    The file has ``register_rows`` rows: ``n_fresh`` registers beyond the fixed ones, then
    one row per value in ``lit_vals``.
    """

    capacity: int  # rows per register (the stride)
    n_fresh: int  # registers beyond the fixed ones
    const_rows: np.ndarray  # [K] flat register rows of the hoisted step constants
    const_vals: np.ndarray  # [steps, K] their values at each step of the segment
    lit_rows: np.ndarray  # [J] flat register rows of values fixed over the segment
    lit_vals: np.ndarray  # [J] their values (literals, hoisted values the same every step)
    gather_idx: np.ndarray  # [L, A, P] flat register row of argument j, in sorted order
    counts: np.ndarray  # [L, n_ops] members running each op
    n_args: np.ndarray  # [L, A] members whose op takes argument j
    n_rows: np.ndarray  # [L] members running some op at this position
    scatter_idx: np.ndarray  # [L, P] flat register row of the target, in sorted order
    scalar_arg: np.ndarray  # [L, A, P] argument j is a scalar (for reductions)

    @property
    def register_rows(self) -> int:
        return n_registers(self.n_fresh) * self.capacity + len(self.lit_rows)

    def tensors(self) -> dict[str, np.ndarray]:
        """What the compiled step loop reads (see ``_Trainer``'s input signature)."""
        out = {k: v for k, v in vars(self).items() if k != "n_fresh"}
        out["capacity"] = np.int32(self.capacity)
        return out


def n_registers(n_fresh: int) -> int:
    """Registers of a machine whose programs assign at most ``n_fresh`` fresh registers."""
    return N_FIXED + n_fresh


def registers_needed(program: Program) -> int:
    """Fresh registers ``program`` may take in :func:`encode`: at most one per live
    statement (its target, or the row of its hoisted values)."""
    return len(program.dead_code_eliminated())


@dataclass(frozen=True)
class _Layout:
    """How :func:`encode` lays out one program.

    ``constants``: its step constants (:func:`~pipeline.execute.step_constant_statements`)
    in order, the columns of its constant table. ``hoisted``: those the machine loads
    instead of running, all but the ones that write a state slot or ``update`` (registers
    with a meaning beyond the step).
    """

    live: Program  # dead code eliminated
    constants: tuple[int, ...]
    hoisted: frozenset[int]

    @property
    def positions(self) -> int:
        return len(self.live) - len(self.hoisted)


def _layout(program: Program) -> _Layout:
    live = program.dead_code_eliminated()
    constants = tuple(sorted(step_constant_statements(live)))
    keep = frozenset((*STATE_SLOTS, OUTPUT))
    return _Layout(live, constants,
                   frozenset(i for i in constants if live.statements[i].target not in keep))


def positions_needed(program: Program) -> int:
    """Positions of the machine ``program`` occupies (its live statements not hoisted)."""
    return _layout(program).positions


# Bounded small: a table is ``steps x columns`` floats (20k steps x 8 = 640 KB on a 100x
# task), and recomputing one costs tens of microseconds.
@functools.lru_cache(maxsize=256)
def _constant_table(statements: tuple[Statement, ...], lr: float, t0: int, t1: int
                    ) -> np.ndarray:
    """``[t1 - t0, len(statements)]``: the values of a program's step-constant
    ``statements`` (in order) at steps ``t0 + 1 .. t1``, computed as the NumPy reference
    computes them (float32 after every op), vectorized over the steps."""
    f32 = np.float32
    t = np.arange(t0 + 1, t1 + 1, dtype=f32)
    env: dict[str, np.ndarray] = {"lr": np.full_like(t, lr), "t": t}
    columns = []
    with np.errstate(all="ignore"):
        for st in statements:
            op = OPS[st.op]
            args = [env[a] if isinstance(a, str) else a for a in st.args]
            if op.axis_arg:  # reduces a scalar: one element per step, not the steps
                value = [op.np_fn(*(a[k] if isinstance(a, np.ndarray) else a for a in args),
                                  axis=None) for k in range(len(t))]
            else:
                value = op.np_fn(*args)
            env[st.target] = np.broadcast_to(np.asarray(value, f32), t.shape)
            columns.append(env[st.target])
    table = np.stack(columns, axis=1) if columns else np.zeros((len(t), 0), f32)
    table.setflags(write=False)
    return table


def encode(programs: Sequence[Program], max_len: int | None = None,
           capacity: int | None = None, *, lr: float, steps: tuple[int, int],
           n_fresh: int | None = None) -> Encoded:
    """Encode the live statements of ``programs`` for a register machine of ``max_len``
    (default: the most :func:`positions_needed`) positions over a flat register file of
    ``capacity`` (default: ``len(programs)``) rows per register and ``n_fresh`` (default:
    the most :func:`registers_needed`) registers beyond the fixed ones, for the steps
    ``steps[0] + 1 .. steps[1]`` at learning rate ``lr`` (the values of the hoisted step
    constants)."""
    n = len(programs)
    layouts = [_layout(p) for p in programs]
    length = (max((lay.positions for lay in layouts), default=0) if max_len is None
              else max_len)
    cap = n if capacity is None else capacity
    fresh_max = (max((len(lay.live) for lay in layouts), default=0) if n_fresh is None
                 else n_fresh)
    if cap < n:
        raise ValueError(f"{n} programs do not fit a register file of capacity {cap}")
    codes = np.full((n, length), NOP, np.int32)
    src = np.zeros((n, length, MAX_ARITY), np.int64)
    dst = np.zeros((n, length), np.int64)
    scalar_arg = np.zeros((n, length, MAX_ARITY), bool)
    const_rows: list[int] = []
    const_vals: list[np.ndarray] = []
    lit_rows: list[int] = []
    lit_vals: list[np.float32] = []
    home: dict[bytes, int] = {}  # a hoisted value sequence -> the one row that holds it
    lit_home: dict[bytes, int] = {}  # a float32 value, fixed over the segment -> its row
    shared = {REG_LR, REG_T}

    def literal_row(value: np.float32) -> int:  # the batch's one row holding ``value``
        key = value.tobytes()
        if key not in lit_home:  # after every member's registers
            lit_home[key] = n_registers(fresh_max) * cap + len(lit_rows)
            lit_rows.append(lit_home[key])
            lit_vals.append(value)
        return lit_home[key]

    for p, layout in enumerate(layouts):
        live, hoisted = layout.live, layout.hoisted
        if layout.positions > length:
            raise ValueError(f"program needs {layout.positions} positions; max_len is {length}")
        column = {k: c for c, k in enumerate(layout.constants)}
        table = (_constant_table(tuple(live.statements[k] for k in layout.constants),
                                 float(lr), *steps) if hoisted else None)
        # A name is bound to a register of this member's (``reg``) or, after a hoisted
        # statement, to the flat row holding its values (``row_of``), which members with
        # the same values share, as all share ``lr`` and ``t``.
        reg: dict[str, int] = {name: r for r, name in enumerate(REGISTERS)}
        row_of: dict[str, int] = {}
        # Abstract shapes: registers hold full tensors, but a reduction of values that are
        # scalars in the reference executor must reduce over one element, not a broadcast.
        scalar = {name: name in ("lr", "t") for name in REGISTERS}
        fresh = N_FIXED

        def new_register() -> int:
            nonlocal fresh
            if fresh - N_FIXED >= fresh_max:
                raise ValueError(f"program needs more than {fresh_max} fresh registers")
            fresh += 1
            return fresh - 1

        i = 0  # position
        for k, st in enumerate(live.statements):
            if k in hoisted:
                scalar[st.target] = True
                reg.pop(st.target, None)
                values = table[:, column[k]]
                bits = values.view(np.uint32)
                key = values.tobytes()
                if bits.size and (bits == bits[0]).all():  # one value: loaded once
                    row_of[st.target] = literal_row(values[0])
                    continue
                if key not in home:
                    home[key] = new_register() * cap + p
                    const_rows.append(home[key])
                    const_vals.append(values)
                row_of[st.target] = home[key]
                continue
            codes[p, i] = OP_CODE[st.op]
            op = OPS[st.op]
            for j, a in enumerate(st.args):
                scalar_arg[p, i, j] = isinstance(a, float) or scalar[a]
            all_scalar = all(scalar[a] for a in st.reads())
            scalar_out = op.arity == 0 or op.shape is Shape.REDUCE or all_scalar
            for j, a in enumerate(st.args):
                if isinstance(a, float):
                    src[p, i, j] = literal_row(np.float32(a))
                elif a in row_of:
                    src[p, i, j] = row_of[a]
                else:
                    r = reg[a]
                    src[p, i, j] = r * cap + (0 if r in shared else p)
            # A name keeps its register, except an input's (refreshed each step) and a
            # name that was bound to a shared row (other members read that row).
            row_of.pop(st.target, None)
            if reg.get(st.target, 0) < len(INPUTS):
                reg[st.target] = new_register()
            dst[p, i] = reg[st.target] * cap + p
            scalar[st.target] = scalar_out
            i += 1
    if n_registers(fresh_max) * cap + len(lit_rows) >= 2**31:
        raise ValueError(f"register file of {n_registers(fresh_max)} x {cap} rows and "
                         f"{len(lit_rows)} literals is too large")
    order = np.argsort(codes, axis=0, kind="stable")  # [P, L]: members sorted per position
    counts = np.zeros((length, NOP), np.int64)
    for i in range(length):
        counts[i] = np.bincount(codes[:, i], minlength=NOP + 1)[:NOP]
    arity = np.array([op.arity for op in OP_ORDER])
    n_args = np.stack([counts[:, arity > j].sum(1) for j in range(MAX_ARITY)], axis=1)

    def by_order(a: np.ndarray) -> np.ndarray:  # [P, L, ...] -> sorted rows, [L, ..., P]
        a = np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=0)
        return np.moveaxis(a, 0, -1)

    n_steps = steps[1] - steps[0]
    return Encoded(
        capacity=cap,
        n_fresh=fresh_max,
        const_rows=np.asarray(const_rows, np.int32),
        const_vals=(np.stack(const_vals, axis=1) if const_vals
                    else np.zeros((n_steps, 0), np.float32)),
        lit_rows=np.asarray(lit_rows, np.int32),
        lit_vals=np.asarray(lit_vals, np.float32),
        gather_idx=by_order(src).astype(np.int32),
        counts=counts.astype(np.int32),
        n_args=n_args.astype(np.int32),
        n_rows=counts.sum(1).astype(np.int32),
        scatter_idx=by_order(dst).astype(np.int32),
        scalar_arg=by_order(scalar_arg),
    )


# ---- the in-graph interpreter ----------------------------------------------------------------


def _apply_op(op: Op, args: list[tf.Tensor], sizes: tuple[int, ...], rows, width: int,
              scalar: list[tf.Tensor]):
    """``op`` on ``[c, n_params]`` arguments. Axis ops reduce per variable's columns; an
    argument that is a scalar in the reference executor (``scalar[j]``, per row) takes part
    as one element, as there."""
    if op.arity == 0:
        return tf.broadcast_to(op.tf_fn(), tf.stack([rows, width]))
    if not op.axis_arg:
        return op.tf_fn(*args)
    return _segment_reduction(op.name, args, scalar, sizes)


# The reductions of ``ops`` (``axis_arg``) per variable, as a few matmuls with a one-hot
# ``[n_params, n_variables]`` matrix instead of one reduction per variable and per
# combination of scalar arguments (hundreds of graph nodes per position). Same math as
# ops/table.py; the NumPy-reference test pins them together, and this check makes an axis op
# added to ops/ without a case here fail at import.
_SEGMENTED = frozenset({"norm", "global_norm", "dot", "cosine_sim", "clip_by_global_norm"})
if _SEGMENTED != {op.name for op in OP_ORDER if op.axis_arg}:
    raise ImportError("pipeline.evaluate has no per-variable form of some axis op in ops/")


def _segment_reduction(name: str, args: list[tf.Tensor], scalar: list[tf.Tensor],
                       sizes: tuple[int, ...]) -> tf.Tensor:
    seg = np.repeat(np.arange(len(sizes)), sizes)
    onehot = np.eye(len(sizes), dtype=np.float32)[seg]  # [n, V]
    inv = tf.constant(1.0 / np.asarray(sizes, np.float32)[None])  # [1, V]

    def total(x):  # per-variable sums, [c, V]
        return tf.matmul(x, onehot)

    def spread(r):  # [c, V] -> [c, n]
        return tf.matmul(r, onehot.T)

    def weight(flag):  # a scalar enters a sum as one element (the broadcast row holds s_v)
        return tf.where(flag[:, None], inv, 1.0)

    def norm(j):
        return tf.sqrt(total(tf.square(args[j])) * weight(scalar[j]))

    def rms(x):
        return tf.sqrt(total(tf.square(x)) * inv)

    match name:
        case "norm":
            return spread(norm(0))
        case "global_norm":
            return spread(rms(args[0]))
        case "dot":
            return spread(total(args[0] * args[1]) * weight(scalar[0] & scalar[1]))
        case "cosine_sim":
            dot = total(args[0] * args[1]) * weight(scalar[0] & scalar[1])
            return spread(dot / (norm(0) * norm(1) + EPS))
        case "clip_by_global_norm":
            x, c = args
            return x * tf.minimum(1.0, tf.abs(c) / (spread(rms(x)) + EPS))
        case _:
            raise ValueError(f"no per-variable form of {name!r}")


def slice_position(enc: dict, i: tf.Tensor) -> dict:
    """The rows of ``enc`` in use at position ``i``."""
    pos = {"counts": enc["counts"][i], "n_rows": enc["n_rows"][i],
           "scatter": enc["scatter_idx"][i, : enc["n_rows"][i]], "args": []}
    for j in range(MAX_ARITY):
        n = enc["n_args"][i, j]
        pos["args"].append((enc["gather_idx"][i, j, :n], enc["scalar_arg"][i, j, :n]))
    return pos


def _position(regs: tf.Variable, pos: dict, sizes: tuple[int, ...]) -> None:
    """One position: each op gathers just its own rows of each argument (no split of the
    data, only of the small index vectors), runs, and one scatter writes every result."""
    width = sum(sizes)
    groups: list[tuple] = []  # per argument j: per op, (rows, scalar)
    for j, arg in enumerate(pos["args"]):
        ops_j = [op for op in OP_ORDER if op.arity > j]
        counts = pos["counts"][: len(ops_j)]
        need = (True, any(op.axis_arg for op in ops_j))
        groups.append(tuple(tf.split(x, counts, num=len(ops_j)) if use else None
                            for x, use in zip(arg, need, strict=True)))
    results = []
    for k, op in enumerate(OP_ORDER):
        xs = [tf.gather(regs, groups[j][0][k]) for j in range(op.arity)]
        flags = [groups[j][1][k] for j in range(op.arity)] if op.axis_arg else []
        results.append(_apply_op(op, xs, sizes, pos["counts"][k], width, flags))
    regs.scatter_update(tf.IndexedSlices(tf.concat(results, axis=0), pos["scatter"]))


def load_constants(regs: tf.Variable, rows: tf.Tensor, values: tf.Tensor) -> None:
    """Write ``values`` ``[K]`` (one step's hoisted step constants, or a segment's literal
    rows) to their register rows, each broadcast over the parameters (one scatter for the
    whole population)."""
    width = regs.shape[1]
    regs.scatter_update(tf.IndexedSlices(
        tf.broadcast_to(values[:, None], tf.stack([tf.shape(values)[0], width])), rows))


def run_programs(regs: tf.Variable, enc: dict, sizes: tuple[int, ...]) -> None:
    """Run every member's program (``enc``, as tensors) on the flat register file ``regs``.

    Position ``i`` runs each op on just the rows (members, sorted by op) that use it there
    and scatters the results in place. No ``tf.cond`` per op: an op on zero rows costs less
    than a cond's switches (measured). The positions are a ``tf.while_loop`` over the
    positions some member reaches: one position's ops in the graph whatever the programs'
    length (a trace of a tenth the size), and no padded positions run. Measured side by side
    against the machine unrolled over positions padded to a multiple of 8 (1024 members,
    smoke proxy): 8% less time per step on paper_adamw mutants, 1-position programs 13%.
    """
    n_positions = tf.reduce_sum(tf.cast(enc["n_rows"] > 0, tf.int32))

    def position(i):
        _position(regs, slice_position(enc, i), sizes)
        return (i + 1,)

    tf.while_loop(lambda i: i < n_positions, position, (tf.constant(0),))


class _Trainer:
    """The compiled training segment and validation pass for one task.

    The task's ``seed`` (initialization, data order) is not baked in: the initial parameters
    and the batch indices are inputs, so tasks differing only in seed share one trace.

    The register file is a variable of dynamic length: the number of members, the stride
    (``Encoded.capacity``) and the registers a batch's programs take are inputs, not part of
    the trace, so no batch retraces. :meth:`reserve` grows the file when a batch needs more
    rows; it never shrinks, so a search's batches reuse one buffer.
    """

    def __init__(self, task: Task):
        self.task = task
        self.shapes = task.param_shapes()
        self.sizes = tuple(int(np.prod(s)) for s in self.shapes)
        self.width = sum(self.sizes)
        d = task.data()
        self.x_train = tf.constant(d.x_train)
        self.y_train = tf.constant(d.y_train)
        self.x_val = tf.constant(d.x_val)
        self.y_val = tf.constant(d.y_val)
        self.regs = tf.Variable(tf.zeros([0, self.width]), shape=tf.TensorShape([None, self.width]),
                                trainable=False, name="registers")
        self.rows = 0
        L, A, n = None, MAX_ARITY, len(OP_ORDER)
        enc_spec = {
            "capacity": tf.TensorSpec([], tf.int32),
            "const_rows": tf.TensorSpec([None], tf.int32),
            "const_vals": tf.TensorSpec([None, None], tf.float32),
            "lit_rows": tf.TensorSpec([None], tf.int32),
            "lit_vals": tf.TensorSpec([None], tf.float32),
            "gather_idx": tf.TensorSpec([L, A, None], tf.int32),
            "counts": tf.TensorSpec([L, n], tf.int32),
            "n_args": tf.TensorSpec([L, A], tf.int32),
            "n_rows": tf.TensorSpec([L], tf.int32),
            "scatter_idx": tf.TensorSpec([L, None], tf.int32),
            "scalar_arg": tf.TensorSpec([L, A, None], tf.bool),
        }
        self.train = tf.function(self._train, autograph=False, input_signature=[
            tf.TensorSpec([None, self.width], tf.float32),
            tf.TensorSpec([len(STATE_SLOTS), None, self.width], tf.float32),
            enc_spec,
            tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.int32),
            tf.TensorSpec([None, task.batch_size], tf.int32),
        ])
        self.validate = tf.function(self._validate, autograph=False, input_signature=[
            tf.TensorSpec([None, self.width], tf.float32)])

    def reserve(self, rows: int) -> None:
        """Make the register file at least ``rows`` rows long."""
        if rows > self.rows:
            self.regs.assign(tf.zeros([rows, self.width]))
            self.rows = rows

    def params(self, theta: tf.Tensor) -> list[tf.Tensor]:
        pieces = tf.split(theta, self.sizes, axis=1)
        return [tf.reshape(p, [-1, *s]) for p, s in zip(pieces, self.shapes, strict=True)]

    def _train(self, theta, slots, enc, start, n_steps, batches):
        """``n_steps`` steps from step ``start``: (theta, slots, losses ``[n_steps, P]``)."""
        task, regs = self.task, self.regs
        pop, cap = tf.shape(theta)[0], enc["capacity"]
        members = tf.range(pop)

        def rows(r: int) -> tf.Tensor:  # flat rows of register r, members 0..P-1
            return r * cap + members

        def put(r: int, value: tf.Tensor) -> None:
            regs.scatter_update(tf.IndexedSlices(value, rows(r)))

        def put_shared(r: int, value: tf.Tensor) -> None:  # lr, t: one row, read by all
            regs.scatter_update(tf.IndexedSlices(tf.fill([1, self.width], value),
                                                 tf.reshape(r * cap, [1])))

        put(REG_W, theta)
        put_shared(REG_LR, tf.constant(task.learning_rate, tf.float32))
        for k, r in enumerate(REG_SLOTS):
            put(r, slots[k])
        load_constants(regs, enc["lit_rows"], enc["lit_vals"])  # nothing writes these rows
        losses = tf.TensorArray(tf.float32, size=n_steps)

        def body(s, losses):
            idx = batches[start + s]
            xb, yb = tf.gather(self.x_train, idx), tf.gather(self.y_train, idx)
            theta = tf.gather(regs, rows(REG_W))
            with tf.GradientTape() as tape:
                tape.watch(theta)
                loss = task.loss(task.apply(self.params(theta), xb), yb)
                total = tf.reduce_sum(loss)
            put(REG_G, tape.gradient(total, theta))
            put_shared(REG_T, tf.cast(start + s + 1, tf.float32))
            load_constants(regs, enc["const_rows"], enc["const_vals"][s])
            run_programs(regs, enc, self.sizes)
            regs.scatter_sub(tf.IndexedSlices(tf.gather(regs, rows(REG_UPDATE)), rows(REG_W)))
            return s + 1, losses.write(s, loss)

        _, losses = tf.while_loop(lambda s, _: s < n_steps, body, (tf.constant(0), losses))
        theta = tf.gather(regs, rows(REG_W))
        slots = tf.stack([tf.gather(regs, rows(r)) for r in REG_SLOTS])
        return theta, slots, losses.stack()

    def _validate(self, theta):
        out = self.task.apply(self.params(theta), self.x_val)
        loss = self.task.loss(out, self.y_val)
        acc = self.task.accuracy(out, self.y_val)
        return loss, (acc if acc is not None else tf.zeros_like(loss))

    def validate_np(self, theta: np.ndarray, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
        parts = [self.validate(tf.constant(theta[i : i + chunk]))
                 for i in range(0, len(theta), chunk)]
        if not parts:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        return (np.concatenate([p[0].numpy() for p in parts]),
                np.concatenate([p[1].numpy() for p in parts]))


class _TrainerPool:
    """The idle trainers of one task: a call takes one, or builds one if none is idle, and
    gives it back when done. A trainer's register file is mutable, so two calls at once never
    share one: a pool of N threads holds at most N trainers (each traced once), whichever
    thread runs a call, and one thread reuses one trainer, as before."""

    def __init__(self, task: Task):
        self.task = task
        self._idle: list[_Trainer] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def take(self) -> Iterator[_Trainer]:
        with self._lock:
            trainer = self._idle.pop() if self._idle else None
        if trainer is None:  # built outside the lock: loading data and tracing take seconds
            trainer = _Trainer(self.task)
        try:
            yield trainer
        finally:
            with self._lock:
                self._idle.append(trainer)

    def peek(self) -> _Trainer:
        """The idle trainer the next :meth:`take` gets, with no other call running."""
        with self.take() as trainer:
            return trainer


# Two threads that miss at once may each build a pool; one is dropped after its call, a
# wasted trace at worst, never a shared trainer.
@functools.lru_cache(maxsize=8)
def _pool(task: Task) -> _TrainerPool:
    return _TrainerPool(task)


def _trainer(task: Task) -> _Trainer:
    """The trainer the next :func:`evaluate` of ``task`` (seed 0) uses, with no other call
    running (to inspect it)."""
    return _pool(task).peek()


def _bucket(length: int) -> int:
    """``length`` rounded up to a multiple of 8 (at least 8): a register-need estimate."""
    return max(8, -(-length // 8) * 8)


# ---- the public entry point -----------------------------------------------------------------


def default_population(task: Task, max_len: int = 16) -> int:
    """Members per batch: 1024 on CPU; on a GPU, enough to fill about half its memory.

    Heuristic: a member costs about ``4 bytes x n_params x (8 + max_len + 10)`` (register
    file, theta, gradients, temporaries) plus its activations, estimated as
    ``4 x batch x 64 x n_params ** 0.5``; the GPU's memory / 2 over that, clipped to
    [1024, 65536] and rounded down to a power of two.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return 1024
    try:
        total = tf.config.experimental.get_memory_info("GPU:0")["peak"] or 0
        details = tf.config.experimental.get_device_details(gpus[0])
        total = details.get("memory_limit", 0) or 16 * 2**30
    except (ValueError, RuntimeError):
        total = 16 * 2**30
    per_member = 4 * task.n_params * (N_FIXED + max_len + 10)
    per_member += 4 * task.batch_size * 64 * int(task.n_params**0.5)
    p = int(np.clip(total / 2 / per_member, 1024, 65536))
    return 2 ** int(math.log2(p))


def evaluate(
    programs: Sequence[Program | str],
    task: Task | str,
    scale: float = 1.0,
    seed: int = 0,
    *,
    hurdles: Hurdles = Hurdles(),
    population: int | None = None,
    curve_points: int = 10,
) -> list[EvalResult]:
    """Train every program on ``task`` (a name, built at ``scale`` and ``seed``, or a Task).

    Programs run in batches of ``population`` members (default: ``default_population``),
    each batch one call of the compiled step loop. Returns one :class:`EvalResult` per
    program, in order. A program's result does not depend on its batch-mates.
    """
    if isinstance(task, str):
        task = make_task(task, scale=scale, seed=seed)
    progs = [p if isinstance(p, Program) else Program.parse(p) for p in programs]
    if not progs:
        return []
    use_baseline = hurdles.baseline_margin is not None and bool(hurdles.points)
    everyone = [*progs, *([hurdles.baseline] if use_baseline else [])]
    if population is None:
        population = default_population(task, _bucket(max(map(registers_needed, everyone))))
    size = max(1, population - int(use_baseline))
    results: list[EvalResult] = []
    with _pool(dataclasses.replace(task, seed=0)).take() as trainer:  # this call's alone
        for lo in range(0, len(progs), size):
            results += _evaluate_batch(trainer, task, progs[lo : lo + size], hurdles,
                                       use_baseline, curve_points)
    return results


def _evaluate_batch(trainer: _Trainer, task: Task, progs: list[Program], hurdles: Hurdles,
                    use_baseline: bool, curve_points: int) -> list[EvalResult]:
    batch = [*progs, hurdles.baseline] if use_baseline else list(progs)
    n = len(batch)
    steps = task.steps
    points = sorted({min(steps, max(1, round(f * steps))) for f in hurdles.points} | {steps})
    theta0 = np.concatenate([np.reshape(a, -1) for a in task.init_params()])
    theta = np.broadcast_to(theta0, (n, trainer.width)).copy()
    batches = tf.constant(task.batch_indices())
    slots = np.zeros((len(STATE_SLOTS), n, trainer.width), np.float32)
    alive = np.arange(n)  # indices into batch of the members still training
    losses = np.full((steps, n), np.nan, np.float32)
    stopped: dict[int, tuple[StopReason, int]] = {}
    final_theta = np.zeros((n, trainer.width), np.float32)
    done = 0
    for point in points:
        enc = encode([batch[i] for i in alive], lr=task.learning_rate, steps=(done, point))
        trainer.reserve(enc.register_rows)
        th, sl, ls = trainer.train(tf.constant(theta), tf.constant(slots), enc.tensors(),
                                   tf.constant(done, tf.int32), tf.constant(point - done, tf.int32),
                                   batches)
        theta, slots = th.numpy(), sl.numpy()
        losses[done:point, alive] = ls.numpy()
        done = point
        if point == steps:
            break
        keep = _hurdle(losses[:done, alive], theta, alive, hurdles, use_baseline, n)
        for k in np.flatnonzero(~keep):
            reason = _reason(losses[:done, alive[k]], theta[k], losses[0, 0], hurdles)
            stopped[alive[k]] = (reason, done)
            final_theta[alive[k]] = theta[k]
        alive, theta, slots = alive[keep], theta[keep], slots[:, keep]
        if not alive.size:  # every member stopped (possible without a baseline)
            break
    final_theta[alive] = theta
    val_loss, val_acc = trainer.validate_np(final_theta)
    out = []
    for i in range(len(progs)):
        reason, at = stopped.get(i, (StopReason.COMPLETED, steps))
        vl = float(val_loss[i])
        finite = math.isfinite(vl) and bool(np.all(np.isfinite(final_theta[i])))
        if reason is StopReason.NONFINITE or not finite:
            fitness = WORST
            reason = StopReason.NONFINITE if not finite else reason
        elif task.metric is Metric.VAL_ACCURACY:
            fitness = float(val_acc[i])
        else:
            fitness = finite_or_worst(-vl)
        acc = float(val_acc[i]) if task.metric is Metric.VAL_ACCURACY else None
        out.append(EvalResult(fitness, vl, acc, at, reason,
                              _curve(losses[:at, i], steps, curve_points)))
    return out


def _recent(losses: np.ndarray, window: int) -> np.ndarray:
    return losses[-window:].mean(axis=0)


def _reason(loss: np.ndarray, theta: np.ndarray, initial: float, hurdles: Hurdles
            ) -> StopReason:
    """Why a member that failed a hurdle stopped."""
    if not (np.all(np.isfinite(loss)) and np.all(np.isfinite(theta))):
        return StopReason.NONFINITE
    if loss[-hurdles.window:].mean() > hurdles.loss_cap * initial:
        return StopReason.LOSS_CAP
    return StopReason.HURDLE


def _hurdle(losses: np.ndarray, theta: np.ndarray, alive: np.ndarray, hurdles: Hurdles,
            use_baseline: bool, n: int) -> np.ndarray:
    """Which of the alive members go on (the baseline, last of the batch, always does)."""
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.all(np.isfinite(losses), axis=0) & np.all(np.isfinite(theta), axis=1)
        recent = _recent(losses, hurdles.window)
        initial = losses[0, 0]  # every member starts from the same parameters
        keep = finite & (recent <= hurdles.loss_cap * initial)
        if use_baseline:
            base = recent[alive == n - 1]
            if base.size and np.isfinite(base[0]):
                keep &= recent <= (1.0 + hurdles.baseline_margin) * base[0]
            keep |= alive == n - 1
    return keep


def _curve(loss: np.ndarray, steps: int, points: int) -> tuple[float, ...]:
    edges = np.linspace(0, steps, points + 1).round().astype(int)
    return tuple(float(np.mean(loss[a:b])) for a, b in zip(edges[:-1], edges[1:], strict=True)
                 if b <= len(loss) and b > a)
