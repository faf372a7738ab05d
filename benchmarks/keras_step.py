"""Step time of ProgramOptimizer against Keras' own optimizers, measured side by side.

An MLP 64-256-256-10 at batch 128 trains with ProgramOptimizer(seeds.lion()) and Keras' Lion
(and likewise AdamW). Rounds are interleaved (ours, theirs, ours, theirs, ...) so machine noise
hits both alike; each round times ``STEPS`` compiled train steps; the median of the per-round
ratios is printed. Goal: ratio <= 1.05 (the program is part of the compiled train step).
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipeline import ProgramOptimizer, seeds  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
STEPS = int(os.environ.get("BENCH_STEPS", "100"))
BATCH = 128


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def _runner(optimizer):
    """A function that runs STEPS compiled train steps and returns the seconds taken."""
    model = _model()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(BATCH, 64)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, size=(BATCH,)).astype("int32"))
    for _ in range(5):  # trace, compile and warm up
        model.train_on_batch(x, y)

    def run() -> float:
        start = time.perf_counter()
        for _ in range(STEPS):
            model.train_on_batch(x, y)
        return time.perf_counter() - start

    return run


def compare(name: str, ours, theirs) -> float:
    run_ours, run_theirs = _runner(ours), _runner(theirs)
    ratios, t_ours, t_theirs = [], [], []
    for r in range(ROUNDS):
        # Alternate who goes first so a slow moment does not always hit the same side.
        if r % 2:
            b, a = run_theirs(), run_ours()
        else:
            a, b = run_ours(), run_theirs()
        t_ours.append(a)
        t_theirs.append(b)
        ratios.append(a / b)
    ratio = statistics.median(ratios)
    print(
        f"{name}: program {1e3 * statistics.median(t_ours) / STEPS:.3f} ms/step; "
        f"keras {1e3 * statistics.median(t_theirs) / STEPS:.3f} ms/step; "
        f"median ratio {ratio:.3f}"
    )
    return ratio


def main() -> None:
    print(f"MLP 64-256-256-10, batch {BATCH}, {ROUNDS} interleaved rounds of {STEPS} steps")
    lion = compare(
        "lion", ProgramOptimizer(seeds.lion(), learning_rate=1e-4), keras.optimizers.Lion(1e-4)
    )
    adamw = compare(
        "adamw", ProgramOptimizer(seeds.adamw(), learning_rate=1e-3), keras.optimizers.AdamW(1e-3)
    )
    worst = max(lion, adamw)
    print(f"keras_step: lion ratio {lion:.3f}; adamw ratio {adamw:.3f}; worst {worst:.3f} "
          f"(goal <= 1.05)")


if __name__ == "__main__":
    main()
