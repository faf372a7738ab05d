"""The batched evaluator: train a population of optimizer programs at once, in one TF graph.

Design (see ``evaluate``):

* Every member's model parameters are rows of one ``[P, n_params]`` tensor ``theta``; the
  task's forward pass is written over the population axis, and one ``GradientTape`` on the
  summed loss gives every member's gradient at once. All members share the initialization
  and the data order.
* Programs are data, not code: dead code is dropped, each live statement ``i`` writes its own
  register ``8 + i`` (registers 0-7 hold ``w g lr t m v state2 state3``), and the batch is
  encoded as integer/float arrays (op codes, argument registers, literals). A register
  machine of fixed maximum length interprets them in-graph over a register file
  ``[8 + L, P, n_params]``. At each position the members are sorted by op (host side, once
  per batch), so each op runs once on just the rows that use it: one gather per argument
  for all ops, a split, the ops, one concat and one in-place scatter. No op runs on rows
  that do not use it; a program never causes a retrace. The compiled step loop is cached
  per (task, max length); the population size is a dynamic dimension.
* Reductions act per member *and per variable* (as ``ProgramOptimizer`` applies a program
  to each variable): ops with ``axis_arg`` run on each variable's columns with ``axis=(1,)``.
* Hurdles: training runs in segments; at each hurdle point members whose loss is NaN/inf,
  above a cap, or behind the AdamW baseline by a margin stop with a partial score, and the
  survivors are compacted, so the rest of the batch gets cheaper.

Fitness is higher-is-better: ``-val_loss`` for tasks with ``Metric.NEG_VAL_LOSS`` (teacher,
char LM), validation accuracy for ``Metric.VAL_ACCURACY`` (digits, MNIST, CIFAR); a member
whose parameters or validation loss are not finite scores ``WORST_FITNESS``.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ops import OPS, Op, Shape
from pipeline import seeds
from pipeline.numpy_tasks import WORST_FITNESS, finite_or_worst
from pipeline.program import INPUTS, OUTPUT, STATE_SLOTS, Program
from pipeline.tasks import Metric, Task, make_task

__all__ = [
    "EvalResult",
    "Hurdles",
    "StopReason",
    "encode",
    "evaluate",
    "default_population",
    "random_program",
]

# Register numbering: inputs, slots, ``update``, then one register per other name a program
# assigns. Straight-line code reads the latest value of a name, so a register per name is
# exact; writes to an input name go to a fresh register (inputs are refreshed each step).
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
    """A batch of programs as arrays; at each position the members are sorted by op code."""

    gather_idx: np.ndarray  # [L, A, P, 2] (register, member) of argument j, in sorted order
    lit_mask: np.ndarray  # [L, A, P] the argument is a literal
    lit_val: np.ndarray  # [L, A, P] its value
    counts: np.ndarray  # [L, n_ops] members running each op
    n_args: np.ndarray  # [L, A] members whose op takes argument j
    n_rows: np.ndarray  # [L] members running some op at this position
    scatter_idx: np.ndarray  # [L, P, 2] (target register, member) in sorted order
    scalar_arg: np.ndarray  # [L, A, P] argument j is a scalar (for reductions)


def live_length(program: Program) -> int:
    return len(program.live_statements)


def n_registers(max_len: int) -> int:
    return N_FIXED + max_len


def encode(programs: Sequence[Program], max_len: int) -> Encoded:
    """Encode the live statements of ``programs`` for a register machine of ``max_len``."""
    n, length = len(programs), max_len
    codes = np.full((n, length), NOP, np.int32)
    src = np.zeros((n, length, MAX_ARITY), np.int32)
    dst = np.zeros((n, length), np.int32)
    scalar_arg = np.zeros((n, length, MAX_ARITY), bool)
    lit_mask = np.zeros((n, length, MAX_ARITY), bool)
    lit_val = np.zeros((n, length, MAX_ARITY), np.float32)
    for p, program in enumerate(programs):
        live = program.dead_code_eliminated()
        if len(live) > length:
            raise ValueError(f"program has {len(live)} live statements; max_len is {length}")
        reg = {name: r for r, name in enumerate(REGISTERS)}
        # Abstract shapes: registers hold full tensors, but a reduction of values that are
        # scalars in the reference executor must reduce over one element, not a broadcast.
        scalar = {name: name in ("lr", "t") for name in REGISTERS}
        fresh = N_FIXED
        for i, st in enumerate(live.statements):
            codes[p, i] = OP_CODE[st.op]
            op = OPS[st.op]
            for j, a in enumerate(st.args):
                scalar_arg[p, i, j] = isinstance(a, float) or scalar[a]
            all_scalar = all(scalar[a] for a in st.reads())
            scalar_out = op.arity == 0 or op.shape is Shape.REDUCE or all_scalar
            for j, a in enumerate(st.args):
                if isinstance(a, float):
                    lit_mask[p, i, j], lit_val[p, i, j] = True, a
                else:
                    src[p, i, j] = reg[a]
            if st.target not in reg or reg[st.target] < len(INPUTS):
                reg[st.target], fresh = fresh, fresh + 1
            dst[p, i] = reg[st.target]
            scalar[st.target] = scalar_out
    order = np.argsort(codes, axis=0, kind="stable")  # [P, L]: members sorted per position
    counts = np.stack([np.bincount(codes[:, i], minlength=NOP + 1)[:NOP] for i in range(length)])
    arity = np.array([op.arity for op in OP_ORDER])
    n_args = np.stack([counts[:, arity > j].sum(1) for j in range(MAX_ARITY)], axis=1)

    def by_order(a: np.ndarray) -> np.ndarray:  # [P, L, ...] -> sorted rows, [L, ..., P]
        a = np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=0)
        return np.moveaxis(a, 0, -1)

    members = np.broadcast_to(order.T[:, None, :], (length, MAX_ARITY, n))
    return Encoded(
        gather_idx=np.stack([by_order(src), members], -1).astype(np.int32),
        lit_mask=by_order(lit_mask),
        lit_val=by_order(lit_val),
        counts=counts.astype(np.int32),
        n_args=n_args.astype(np.int32),
        n_rows=counts.sum(1).astype(np.int32),
        scatter_idx=np.stack([by_order(dst), order.T], -1).astype(np.int32),
        scalar_arg=by_order(scalar_arg),
    )


# ---- the in-graph interpreter ----------------------------------------------------------------


def _apply_op(op: Op, args: list[tf.Tensor], sizes: tuple[int, ...], rows, width: int,
              scalar: list[tf.Tensor]):
    """``op`` on ``[c, n_params]`` arguments. Axis ops reduce per variable's columns; an
    argument that is a scalar in the reference executor (``scalar[j]``, per row) takes part
    as one element, as there, for every combination of scalar arguments present."""
    if op.arity == 0:
        return tf.broadcast_to(op.tf_fn(), tf.stack([rows, width]))
    if not op.axis_arg:
        return op.tf_fn(*args)
    result = None
    for combo in itertools.product((False, True), repeat=op.arity):
        r = _per_variable(op, args, sizes, combo)
        if result is None:
            result = r
            continue
        match = tf.reduce_all(tf.stack([f if c else ~f for f, c in zip(scalar, combo,
                                                                         strict=True)]), 0)
        result = tf.where(match[:, None], r, result)
    return result


def _per_variable(op: Op, args: list[tf.Tensor], sizes: tuple[int, ...],
                  as_scalar: tuple[bool, ...]) -> tf.Tensor:
    """Axis op per variable; arguments flagged ``as_scalar`` enter as one column."""
    starts = np.cumsum((0, *sizes[:-1]))
    outs = []
    for start, size in zip(starts, sizes, strict=True):
        pieces = [a[:, start : start + 1] if s else a[:, start : start + size]
                  for a, s in zip(args, as_scalar, strict=True)]
        r = op.tf_fn(*pieces, axis=(1,))
        outs.append(tf.broadcast_to(r, tf.stack([tf.shape(r)[0], size])))
    return tf.concat(outs, axis=1) if len(outs) > 1 else outs[0]


# Ops of more than a few kernels run under a cond, so a position pays little for the ops no
# member uses there (the cheap ones run on zero rows, which costs about as much as a cond).
_GUARDED = frozenset(op.name for op in OP_ORDER if op.axis_arg or op.name in {
    "div", "reciprocal", "power", "log", "log2", "log10", "cbrt", "arccosh", "arctanh",
    "arcsin", "arccos", "sinh", "cosh", "clip", "exp2", "exp10", "interp"})


def slice_positions(enc: dict, max_len: int) -> list[dict]:
    """Per position, the rows of ``enc`` in use (hoisted out of the training loop)."""
    out = []
    for i in range(max_len):
        pos = {"counts": enc["counts"][i], "n_rows": enc["n_rows"][i],
               "scatter": enc["scatter_idx"][i, : enc["n_rows"][i]], "args": []}
        for j in range(MAX_ARITY):
            n = enc["n_args"][i, j]
            pos["args"].append((enc["gather_idx"][i, j, :n], enc["lit_mask"][i, j, :n, None],
                                enc["lit_val"][i, j, :n, None], enc["scalar_arg"][i, j, :n]))
        out.append(pos)
    return out


def _position(regs: tf.Variable, pos: dict, sizes: tuple[int, ...]) -> None:
    width = sum(sizes)
    args: list[list[tf.Tensor]] = []
    scalar: list[list[tf.Tensor]] = []
    for j, (idx, mask, val, is_scalar) in enumerate(pos["args"]):
        ops_j = [op for op in OP_ORDER if op.arity > j]
        a = tf.gather_nd(regs, idx)
        if any(op.const_ok[j] for op in ops_j):
            a = tf.where(mask, val, a)
        args.append(tf.split(a, pos["counts"][: len(ops_j)], num=len(ops_j)))
        if any(op.axis_arg for op in ops_j):
            scalar.append(tf.split(is_scalar, pos["counts"][: len(ops_j)], num=len(ops_j)))
    results = []
    for k, op in enumerate(OP_ORDER):
        count = pos["counts"][k]
        xs = [args[j][k] for j in range(op.arity)]

        def run(op=op, xs=xs, count=count, k=k):
            flags = [scalar[j][k] for j in range(op.arity)] if op.axis_arg else []
            return _apply_op(op, xs, sizes, count, width, flags)

        if op.name in _GUARDED:
            results.append(tf.cond(count > 0, run, lambda: tf.zeros([0, width])))
        else:
            results.append(run())
    regs.scatter_nd_update(pos["scatter"], tf.concat(results, axis=0))


def run_programs(regs: tf.Variable, positions: list[dict], sizes: tuple[int, ...]) -> None:
    """Run every member's program on the register file ``regs`` ``[R, capacity, n_params]``.

    Position ``i`` gathers each argument for all members at once (sorted by op), splits the
    rows among the ops, runs each op on its rows and scatters the results in place; a
    position no member reaches is skipped.
    """
    for pos in positions:
        tf.cond(pos["n_rows"] > 0, lambda pos=pos: _position(regs, pos, sizes), lambda: None)


class _Trainer:
    """The compiled training segment and validation pass for one (task, max length, capacity).

    The task's ``seed`` (initialization, data order) is not baked in: the initial parameters
    and the batch indices are inputs, so tasks differing only in seed share one trace.

    ``capacity`` is the most members a call may train (the register file's second axis);
    a call with fewer members (after hurdles) uses the first rows, without a retrace.
    """

    def __init__(self, task: Task, max_len: int, capacity: int):
        self.task, self.max_len, self.capacity = task, max_len, capacity
        self.shapes = task.param_shapes()
        self.sizes = tuple(int(np.prod(s)) for s in self.shapes)
        self.width = sum(self.sizes)
        d = task.data()
        self.x_train = tf.constant(d.x_train)
        self.y_train = tf.constant(d.y_train)
        self.x_val = tf.constant(d.x_val)
        self.y_val = tf.constant(d.y_val)
        self.regs = tf.Variable(tf.zeros([n_registers(max_len), capacity, self.width]),
                                trainable=False, name="registers")
        L, A, n = max_len, MAX_ARITY, len(OP_ORDER)
        enc_spec = {
            "gather_idx": tf.TensorSpec([L, A, None, 2], tf.int32),
            "lit_mask": tf.TensorSpec([L, A, None], tf.bool),
            "lit_val": tf.TensorSpec([L, A, None], tf.float32),
            "counts": tf.TensorSpec([L, n], tf.int32),
            "n_args": tf.TensorSpec([L, A], tf.int32),
            "n_rows": tf.TensorSpec([L], tf.int32),
            "scatter_idx": tf.TensorSpec([L, None, 2], tf.int32),
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

    def params(self, theta: tf.Tensor) -> list[tf.Tensor]:
        pieces = tf.split(theta, self.sizes, axis=1)
        return [tf.reshape(p, [-1, *s]) for p, s in zip(pieces, self.shapes, strict=True)]

    def _train(self, theta, slots, enc, start, n_steps, batches):
        """``n_steps`` steps from step ``start``: (theta, slots, losses ``[n_steps, P]``)."""
        task, regs = self.task, self.regs
        pop = tf.shape(theta)[0]
        members = tf.range(pop)

        def rows(r: int) -> tf.Tensor:  # gather/scatter indices of register r, members 0..P-1
            return tf.stack([tf.fill([pop], r), members], axis=1)

        shape = tf.shape(theta)
        regs.scatter_nd_update(rows(REG_W), theta)
        regs.scatter_nd_update(rows(REG_LR), tf.fill(shape, task.learning_rate))
        for k, r in enumerate(REG_SLOTS):
            regs.scatter_nd_update(rows(r), slots[k])
        losses = tf.TensorArray(tf.float32, size=n_steps)
        positions = slice_positions(enc, self.max_len)

        def body(s, losses):
            idx = batches[start + s]
            xb, yb = tf.gather(self.x_train, idx), tf.gather(self.y_train, idx)
            theta = tf.gather_nd(regs, rows(REG_W))
            with tf.GradientTape() as tape:
                tape.watch(theta)
                loss = task.loss(task.apply(self.params(theta), xb), yb)
                total = tf.reduce_sum(loss)
            regs.scatter_nd_update(rows(REG_G), tape.gradient(total, theta))
            regs.scatter_nd_update(rows(REG_T), tf.fill(shape, tf.cast(start + s + 1, tf.float32)))
            run_programs(regs, positions, self.sizes)
            regs.scatter_nd_sub(rows(REG_W), tf.gather_nd(regs, rows(REG_UPDATE)))
            return s + 1, losses.write(s, loss)

        _, losses = tf.while_loop(lambda s, _: s < n_steps, body, (tf.constant(0), losses))
        theta = tf.gather_nd(regs, rows(REG_W))
        slots = tf.stack([tf.gather_nd(regs, rows(r)) for r in REG_SLOTS])
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


@functools.lru_cache(maxsize=8)
def _trainer(task: Task, max_len: int, capacity: int) -> _Trainer:
    return _Trainer(task, max_len, capacity)


def _bucket(length: int) -> int:
    """Max lengths are compiled in buckets of 8 statements (8, 16, 24, ...)."""
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
    max_len = _bucket(max(live_length(p) for p in
                          [*progs, *([hurdles.baseline] if use_baseline else [])]))
    capacity = population or default_population(task, max_len)
    trainer = _trainer(dataclasses.replace(task, seed=0), max_len, capacity)
    size = max(1, capacity - int(use_baseline))
    results: list[EvalResult] = []
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
        enc = encode([batch[i] for i in alive], trainer.max_len)
        th, sl, ls = trainer.train(tf.constant(theta), tf.constant(slots), vars(enc),
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
    final_theta[alive] = theta
    val_loss, val_acc = trainer.validate_np(final_theta)
    out = []
    for i in range(len(progs)):
        reason, at = stopped.get(i, (StopReason.COMPLETED, steps))
        vl = float(val_loss[i])
        finite = math.isfinite(vl) and bool(np.all(np.isfinite(final_theta[i])))
        if reason is StopReason.NONFINITE or not finite:
            fitness = WORST_FITNESS
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


# ---- random programs (benchmarks and tests; the search's mutator lives elsewhere) -----------


def random_program(rng: np.random.Generator, n_statements: int) -> Program:
    """A random valid program of ``n_statements`` statements, its last assigning ``update``.

    Each statement applies a uniformly drawn op; each argument is, where the op allows, a
    literal ~ N(0, 1) with probability 0.2, else with probability 0.5 the variable assigned
    just before (so most statements are live), else any variable defined so far. Targets are
    a new temporary (probability 0.7) or a state slot.
    """
    names = list(OPS)
    defined = [*INPUTS, *STATE_SLOTS]
    lines = []
    for i in range(n_statements):
        while True:
            op = OPS[names[rng.integers(len(names))]]
            args = []
            for ok in op.const_ok:
                if ok and rng.random() < 0.2:
                    args.append(round(float(rng.normal()), 4))
                elif i and rng.random() < 0.5:
                    args.append(defined[-1])
                else:
                    args.append(defined[rng.integers(len(defined))])
            if not args or any(isinstance(a, str) for a in args):
                break
        if i == n_statements - 1:
            target = OUTPUT
        elif rng.random() < 0.7:
            target = f"x{i}"
        else:
            target = STATE_SLOTS[rng.integers(len(STATE_SLOTS))]
        defined.append(target)
        text = ", ".join(a if isinstance(a, str) else repr(a) for a in args)
        lines.append(f"{target} = {op.name}({text})")
    return Program.parse("\n".join(lines))
