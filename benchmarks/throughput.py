"""Throughput of the batched evaluator on the smoke proxy, against a hand-written ceiling.

Smoke proxy: teacher regression, MLP 16-32-1, batch 32, 200 steps. (a) ``evaluate`` on
random valid mutated programs of 8-15 statements (seeds mutated 1-5 times by the search's
``pipeline.mutate.mutate``, as a search evaluates them); (b) in the same run, batched AdamW written
directly in TF over a population of the same size, with the same model, data and loop
(the ceiling). Both are timed after a warm-up call (tracing excluded).

    PYTHONPATH=. python benchmarks/throughput.py [--population 1024] [--repeats 5]
        [--seeds adamw --lengths 12 19]   # mutants of one seed only, e.g. an AdamW search

It then prints the peak memory of training a population of ``--population`` mutants at
each task scale the proxy and the funnels use (``--memory``; ``''`` skips it), so a run can
be sized: each in a fresh process (the peak resident set, and the device's peak when a GPU
does the training), 10 steps (memory does not grow with steps).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import resource
import time

import numpy as np
import tensorflow as tf

from pipeline import seeds
from pipeline.evaluator import NO_HURDLES, evaluate
from pipeline.mutate import MutationConfig, mutate
from pipeline.program import Program
from pipeline.tasks import TeacherRegression, make_task

# task:scale pairs: the proxy; quickstart's funnel (teacher x4, digits x1); discover.gin's (x10)
MEMORY = "teacher:1,teacher:4,teacher:10,digits_mlp:1,digits_mlp:10,char_lm:1"

MUTATION = MutationConfig()


def mutated_program(rng: np.random.Generator, config: MutationConfig = MUTATION,
                    lengths: tuple[int, int] = (8, 15),
                    names: tuple[str, ...] = tuple(sorted(seeds.SEEDS))) -> Program:
    """A seed (one of ``names``) mutated 1-5 times, redrawn until it has
    ``lengths[0]..lengths[1]`` statements."""
    while True:
        program = seeds.SEEDS[names[int(rng.integers(len(names)))]]()
        for _ in range(int(rng.integers(1, 6))):
            program = mutate(program, rng, config).child or program
        if lengths[0] <= len(program) <= lengths[1]:
            return program


def adamw_ceiling(task: TeacherRegression, population: int):
    """A compiled function training ``population`` copies with AdamW (Keras' defaults)."""
    d = task.data()
    x_train, y_train = tf.constant(d.x_train), tf.constant(d.y_train)
    batches = tf.constant(task.batch_indices())
    shapes = task.param_shapes()
    sizes = [int(np.prod(s)) for s in shapes]

    def params(theta):
        pieces = tf.split(theta, sizes, 1)
        return [tf.reshape(p, [-1, *s]) for p, s in zip(pieces, shapes, strict=True)]

    b1, b2, eps, wd, lr = 0.9, 0.999, 1e-7, 0.004, task.learning_rate

    @tf.function(autograph=False)
    def run(theta):
        m = tf.zeros_like(theta)
        v = tf.zeros_like(theta)

        def body(s, theta, m, v):
            idx = batches[s]
            xb, yb = tf.gather(x_train, idx), tf.gather(y_train, idx)
            with tf.GradientTape() as tape:
                tape.watch(theta)
                total = tf.reduce_sum(task.loss(task.apply(params(theta), xb), yb))
            g = tape.gradient(total, theta)
            t = tf.cast(s + 1, tf.float32)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            alpha = lr * tf.sqrt(1 - b2**t) / (1 - b1**t)
            theta = theta - alpha * m / (tf.sqrt(v) + eps) - lr * wd * theta
            return s + 1, theta, m, v

        _, theta, _, _ = tf.while_loop(lambda s, *_: s < task.steps, body,
                                       (tf.constant(0), theta, m, v))
        return theta

    theta0 = np.concatenate([a.reshape(-1) for a in task.init_params()])
    theta0 = tf.constant(np.broadcast_to(theta0, (population, sum(sizes))).copy())
    return lambda: run(theta0).numpy()


def _peak_memory(task: str, scale: float, population: int) -> tuple[float, float | None]:
    """In this (fresh) process: train ``population`` mutants of ``task`` at ``scale`` for 10
    steps; (peak resident set, device peak or None) in GiB."""
    rng = np.random.default_rng(0)
    programs = [mutated_program(rng) for _ in range(population)]
    built = make_task(task, scale=scale, base_steps=10)
    evaluate(programs, built, hurdles=NO_HURDLES, population=population)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    gpus = tf.config.list_logical_devices("GPU")
    device = (tf.config.experimental.get_memory_info(gpus[0].name)["peak"] / 2**30
              if gpus else None)
    return rss, device


def print_memory(spec: str, population: int) -> None:
    """Peak memory per ``task:scale`` of ``spec``, each measured in a spawned process."""
    spawn = multiprocessing.get_context("spawn")
    for item in filter(None, spec.split(",")):
        task, _, scale = item.partition(":")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
            rss, device = pool.submit(_peak_memory, task, float(scale or 1), population).result()
        gpu = f"; device peak {device:.2f} GiB" if device is not None else ""
        print(f"memory at P={population}: {task} x{float(scale or 1):g}: peak resident "
              f"{rss:.2f} GiB{gpu}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--population", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", nargs="+", default=sorted(seeds.SEEDS),
                        choices=sorted(seeds.SEEDS),
                        help="seed programs to mutate (--seeds adamw: as an AdamW-seeded search)")
    parser.add_argument("--lengths", nargs=2, type=int, default=(8, 15), metavar=("MIN", "MAX"),
                        help="program lengths drawn (AdamW itself has 17 statements)")
    parser.add_argument("--memory", default=MEMORY,
                        help="comma-separated task:scale pairs whose peak memory to print")
    a = parser.parse_args()
    task = TeacherRegression()
    rng = np.random.default_rng(a.seed)

    def batch():
        return [mutated_program(rng, lengths=tuple(a.lengths), names=tuple(a.seeds))
                for _ in range(a.population)]

    lengths = [len(p.live_statements) for p in batch()]
    print(f"population {a.population}; live statements per program: mean "
          f"{np.mean(lengths):.1f}, max {max(lengths)}")
    print_memory(a.memory, a.population)  # before the timing, in processes that have ended
    evaluate(batch(), task, hurdles=NO_HURDLES, population=a.population)  # warm-up
    ceiling = adamw_ceiling(task, a.population)
    ceiling()  # warm-up
    t_eval, t_ceil = [], []  # interleaved, so both see the same machine load
    for _ in range(a.repeats):
        progs = batch()
        t0 = time.perf_counter()
        evaluate(progs, task, hurdles=NO_HURDLES, population=a.population)
        t_eval.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ceiling()
        t_ceil.append(time.perf_counter() - t0)
    # Medians: a shared machine's stalls hit single rounds, not the typical one.
    x = a.population / float(np.median(t_eval))
    y = a.population / float(np.median(t_ceil))
    print(f"throughput: {x:.1f} candidates/s; ceiling: {y:.1f} candidates/s; ratio: {x / y:.3f}")


if __name__ == "__main__":
    main()
