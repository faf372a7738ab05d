"""Training a batch of programs in one TF graph, with hurdles.

* Every member's model parameters are rows of one ``[P, n_params]`` tensor ``theta``; the
  task's forward pass is written over the population axis, and one ``GradientTape`` on the
  summed loss gives every member's gradient at once. All members share the initialization
  and the data order. Each step the register machine (``machine.py``) runs every member's
  program on the gradients, and ``update`` is subtracted from ``w``. The compiled step loop
  (:class:`Trainer`) is traced once per task.
* Hurdles: training runs in segments; at each hurdle point members whose loss is NaN/inf,
  above a cap, or behind the AdamW baseline by a margin stop with a partial score, and the
  survivors are compacted, so the rest of the batch gets cheaper.

Fitness is higher-is-better: ``-val_loss`` for tasks with ``Metric.NEG_VAL_LOSS`` (teacher,
char LM), validation accuracy for ``Metric.VAL_ACCURACY`` (digits, MNIST, CIFAR); a member
whose parameters or validation loss are not finite scores ``WORST``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from pipeline import seeds
from pipeline.evaluator.encode import (
    MAX_ARITY,
    OP_ORDER,
    REG_G,
    REG_LR,
    REG_SLOTS,
    REG_T,
    REG_UPDATE,
    REG_W,
    encode,
)
from pipeline.evaluator.machine import load_constants, run_programs
from pipeline.fitness import WORST, finite_or_worst
from pipeline.program import Program
from pipeline.statement import STATE_SLOTS
from pipeline.tasks import Metric, Task

__all__ = ["NO_HURDLES", "EvalResult", "Hurdles", "StopReason", "Trainer", "train_batch"]


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


class Trainer:
    """The compiled training segment and validation pass for one task.

    The task's ``seed`` (initialization, data order) is not baked in: the initial parameters
    and the batch indices are inputs, so tasks differing only in seed share one trace.

    The register file is a variable of dynamic length: the number of members, the stride
    (``Encoded.capacity``) and the registers a batch's programs take are inputs, not part of
    the trace, so no batch retraces. :meth:`reserve` grows the file when a batch needs more
    rows; it never shrinks, so a search's batches reuse one buffer. The file is mutable
    state: one call at a time uses a trainer (``Evaluator`` hands each call its own).
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


def train_batch(trainer: Trainer, task: Task, progs: list[Program], hurdles: Hurdles,
                use_baseline: bool, curve_points: int) -> list[EvalResult]:
    """Train ``progs`` (and the baseline last, with ``use_baseline``) on ``task`` with
    ``trainer``, stopping members at the hurdles; one result per program of ``progs``."""
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
