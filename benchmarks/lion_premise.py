"""Lion's premise: on which proxy does Lion, tuned, beat AdamW, tuned?

Evolution warm-started from AdamW can only move toward Lion if the proxy rewards it. The
Lion paper reports its gains at larger batch sizes and on classification and language
models, so this script tunes both on candidate proxies (each task's proxy size, at several
batch sizes) and prints, per proxy, each one's best mean over a learning-rate grid (x2 apart,
``--grid`` points from x2^-6 of the task's AdamW rate), the seed spread there, whether the
best rate is at an edge of the grid, and Lion minus AdamW in units of the spread. The last
line counts the proxies where Lion beats AdamW by more than one seed std.

Both optimizers are programs trained by the batched evaluator (``seeds.adamw()`` and
``seeds.lion()`` train exactly like Keras' AdamW and Lion: ``tests/test_benchmark.py``).

Run: ``.venv/bin/python benchmarks/lion_premise.py`` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import math
import time

from pipeline import seeds
from pipeline.evaluator import NO_HURDLES, evaluate
from pipeline.proxy import tune
from pipeline.tasks import make_task

DEFAULT = "teacher;teacher:batch_size=128;teacher:batch_size=512;digits_mlp;" \
          "digits_mlp:batch_size=128;digits_mlp:batch_size=512;char_lm;char_lm:batch_size=128"


def parse(spec: str) -> tuple[str, dict[str, int]]:
    """``digits_mlp:batch_size=128`` -> (task, fields)."""
    task, *fields = spec.split(":")
    out = {}
    for f in fields:
        key, _, value = f.partition("=")
        if key not in ("batch_size", "base_steps") or not value.isdigit():
            raise ValueError(f"{spec!r}: a field reads batch_size=N or base_steps=N. "
                             f"Received: {f!r}")
        out[key] = int(value)
    make_task(task, **out)  # an unknown task or field fails here, before anything trains
    return task, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxies", default=DEFAULT,
                    help="';'-separated tasks, each optionally with ':batch_size=N' and "
                         "':base_steps=N'")
    ap.add_argument("--grid", type=int, default=10, help="multipliers x2 apart from 2^-6")
    ap.add_argument("--seeds", type=int, default=4, help="init seeds per point")
    args = ap.parse_args()
    try:
        proxies = [(spec, *parse(spec)) for spec in args.proxies.split(";")]
    except (ValueError, TypeError) as e:
        ap.error(str(e))
    mults = [2.0 ** k for k in range(-6, -6 + args.grid)]
    programs = {"adamw": seeds.adamw(), "lion": seeds.lion()}
    t0 = time.time()
    wins = []
    print(f"best mean over lr = task rate x 2^-6..2^{args.grid - 7} ({args.seeds} seeds), "
          "'*' = best rate at an edge of the grid")
    for spec, task, fields in proxies:

        def run(progs, name, scale, seed, fields=fields):
            built = make_task(name, scale=scale, seed=seed, **fields)
            return [r.fitness for r in evaluate(list(progs), built, hurdles=NO_HURDLES)]

        rows = dict(zip(programs, tune(list(programs.values()), task, run, mults,
                                       range(args.seeds)), strict=True))
        a, lion = rows["adamw"], rows["lion"]
        spread = math.sqrt((a.std ** 2 + lion.std ** 2) / 2) or 1e-12
        z = (lion.mean - a.mean) / spread
        if z > 1 and math.isfinite(lion.mean):
            wins.append(spec)
        cells = "   ".join(f"{n} {r.mean:>8.4f} ± {r.std:.4f} at x{r.multiplier:g}"
                           f"{'*' if r.at_edge else ' '}" for n, r in rows.items())
        print(f"{spec:<28} {cells}   lion - adamw {lion.mean - a.mean:+.4f} ({z:+.1f} std)",
              flush=True)
    print(f"({time.time() - t0:.0f} s; the std is the mean of the two spreads)")
    print(f"lion beats adamw by more than one seed std on {len(wins)} of {len(proxies)} "
          f"proxies{': ' + ', '.join(wins) if wins else ''}")


if __name__ == "__main__":
    main()
