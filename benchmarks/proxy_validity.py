"""Proxy validity: does the proxy fitness rank known optimizers the way held-out targets do?

A search optimises its proxy; the proxy is only worth optimising if a better proxy score
means a better optimizer on tasks the search never sees. This script scores a panel of known
optimizers, written as programs, two ways in one run:

* with the proxy fitness (``pipeline.proxy``: best of the K learning-rate multipliers on each
  proxy task; several tasks combined in units of the warm start's seed noise), and
* on held-out target tasks, each optimizer at its own tuned rate: best mean over a grid of
  ``--grid`` rates (x2 apart, centred on the task's AdamW rate) and ``--seeds`` init seeds;
  an optimizer's target score is its mean rank over the targets.

It prints, per proxy, the Spearman rank correlation between the two over the panel, marks
best rates at the edge of the target grid, and shows the warm start (AdamW) at its best
multiplier on each proxy task beside AdamW tuned on a fine grid there (equal within noise
means the warm start is not handicapped). The last line reads
``proxy validity: spearman 0.83 over 12 optimizers`` for the first (default) proxy.

Run: ``.venv/bin/python benchmarks/proxy_validity.py`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import time

from scipy.stats import spearmanr

from pipeline import seeds
from pipeline.evaluate import NO_HURDLES, evaluate
from pipeline.program import Program
from pipeline.proxy import Proxy, calibrate, score, tune
from pipeline.tasks import make_task


def panel() -> dict[str, Program]:
    """Known optimizers as programs: the ranking the proxy must reproduce."""
    adagrad = Program.parse("g2 = square(g)\nv = v + g2\ns = sqrt(v)\nd = s + 1e-7\n"
                            "u = g / d\nupdate = u * lr\n")
    sgd = Program.parse("update = g * lr\n")
    return {
        "adamw": seeds.adamw(),
        "adam": seeds.adamw(weight_decay=0.0),
        "lion": seeds.lion(),
        "sgd_momentum": seeds.sgd_momentum(),
        "sgd": sgd,
        "rmsprop": seeds.rmsprop(),
        "signsgd": seeds.signsgd(),
        "adagrad": adagrad,
        "adamw_no_bias_corr": seeds.paper_adamw(),  # the paper's seed, at the rate it is given
        "adamw_beta1_0.5": seeds.adamw(beta_1=0.5),
        "adamw_beta2_0.9": seeds.adamw(beta_2=0.9),
        "adamw_eps_0.1": seeds.adamw(epsilon=0.1),
        "adamw_wd_0.3": seeds.adamw(weight_decay=0.3),
    }


def tf_evaluate(programs, task, scale, seed):
    return [r.fitness for r in evaluate(list(programs), task, scale, seed, hurdles=NO_HURDLES)]


def tuned(programs: dict[str, Program], task: str, n_grid: int, n_seeds: int):
    """Per program: its best over a grid of ``n_grid`` multipliers x2 apart (``Tuned``)."""
    mults = [2.0 ** k for k in range(-(n_grid // 2), n_grid - n_grid // 2)]
    rows = tune(list(programs.values()), task, tf_evaluate, mults, range(n_seeds))
    return dict(zip(programs, rows, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxies", default="teacher,digits_mlp,char_lm;teacher,digits_mlp;teacher",
                    help="';'-separated proxies, each a ','-separated task list; first = default")
    ap.add_argument("--targets", default="teacher_deep,synth_mlp,digits_conv")
    ap.add_argument("--grid", type=int, default=10, help="target grid points, x2 apart")
    ap.add_argument("--seeds", type=int, default=2, help="target init seeds")
    args = ap.parse_args()
    t0 = time.time()
    programs = panel()
    names = list(programs)

    print("== held-out targets: best of the grid (mean over seeds), '*' = best rate at an edge")
    ranks = {n: [] for n in names}
    for target in args.targets.split(","):
        rows = tuned(programs, target, args.grid, args.seeds)
        order = sorted(names, key=lambda n: -rows[n].mean)
        for k, n in enumerate(order):
            ranks[n].append(k + 1)
        lr = make_task(target).learning_rate
        print(f"-- {target} (AdamW base lr {lr:g})")
        for n in order:
            r = rows[n]
            mark = "*" if r.at_edge else ""
            print(f"   {n:<20} {r.mean:>10.4f} ± {r.std:.4f} at lr {lr * r.multiplier:.2e}{mark}")
    target_score = {n: -statistics.fmean(ranks[n]) for n in names}

    results = []
    for spec in args.proxies.split(";"):
        tasks = tuple(spec.split(","))
        proxy = calibrate(Proxy(tasks=tasks), seeds.adamw(), tf_evaluate)
        scores = score([programs[n] for n in names], proxy, tf_evaluate)
        rho = spearmanr([s.fitness for s in scores], [target_score[n] for n in names]).statistic
        results.append((tasks, rho))
        print(f"\n== proxy {tasks}: noise (warm start's seed std) {proxy.noise:.4g}")
        for task, mean, std in zip(tasks, proxy.calibration.means, proxy.calibration.stds,
                                   strict=True):
            fine = tuned({"adamw": seeds.adamw()}, task, args.grid, 3)["adamw"]
            print(f"   warm start on {task}: best of K {mean:.4f} ± {std:.4f} (5 seeds); "
                  f"AdamW on a fine grid {fine.mean:.4f} ± {fine.std:.4f} (3 seeds)"
                  f"{' at an edge' if fine.at_edge else ''}")
        for n, s in sorted(zip(names, scores, strict=True), key=lambda x: -x[1].fitness):
            print(f"   {n:<20} fitness {s.fitness:>10.4f}  target mean rank "
                  f"{-target_score[n]:>5.2f}  lr x {s.lr_multipliers}")
        print(f"   spearman {rho:.2f}")
    print(f"\n({time.time() - t0:.0f} s)")
    for tasks, rho in results:
        print(f"proxy {','.join(tasks)}: spearman {rho:.2f}")
    print(f"proxy validity: spearman {results[0][1]:.2f} over {len(names)} optimizers")


if __name__ == "__main__":
    main()
