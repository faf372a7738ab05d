"""Proxy validity: does the proxy fitness rank known optimizers the way held-out targets do?

A search optimises its proxy; the proxy is only worth optimising if a better proxy score
means a better optimizer on tasks the search never sees. This script scores a panel of known
optimizers, written as programs, two ways in one run:

* with the proxy fitness (``pipeline.proxy``: best of the K learning-rate multipliers on each
  proxy task; several tasks combined in units of the warm start's seed noise), and
* on held-out target tasks, each optimizer at its own tuned rate: best mean over a grid of
  ``--grid`` rates (x2 apart, centred on the task's AdamW rate; two more steps past an edge
  where the best was there) and ``--seeds`` init seeds;
  an optimizer's target score is its mean rank over the targets.

How far a proxy can agree with the targets is bounded by how far the targets agree with
themselves. The seeds are split in two halves, each tuned and ranked on its own; the Spearman
correlation between the halves' mean ranks is the targets' split-half reliability, and
Spearman-Brown turns it into the reliability ``R`` of the ranking over all seeds. A proxy that
measured exactly what the targets measure, without noise, would still only be expected to
reach about ``sqrt(R)``: a validity goal above that asks for more seeds or for targets that
separate the panel, not for a better proxy. The script prints both, and how often two
targets agree with each other.

A proxy has seed noise of its own: with a dozen optimizers a few thousandths apart, which
init seed the proxy trains with can move the figure by 0.4. Each proxy is therefore scored on
``--draws`` disjoint blocks of init seeds, and its figure is the mean Spearman over them.

It prints, per proxy, the Spearman rank correlation between the two over the panel, marks
best rates at the edge of the target grid, and shows the warm start (AdamW) at its best
multiplier on each proxy task beside AdamW tuned on a fine grid there (equal within noise
means the warm start is not handicapped). The last line reads
``proxy validity: spearman 0.83 over 12 optimizers`` for the first proxy (``base.gin``'s
``digits_mlp`` at scale 0.5: the default), the mean over its draws.

Which targets: tasks the search and the funnel never train on, that separate the panel (each
target's own two halves of seeds agree) and that agree with one another, since a proxy can
only reproduce a ranking the targets share. The defaults are a one-pass classification
(``synth_mlp``), a ConvNet on digits and the character language model. Tasks with a small
training set trained for several epochs (``teacher_deep``; ``synth_mlp`` with 1024 examples,
as it was) ranked the panel by regularisation, weight decay 0.3 first, where digits puts it
last: those three targets agreed at Spearman 0.44, -0.14 and -0.35, so no proxy could reach
0.8 against their mean.

Run: ``.venv/bin/python benchmarks/proxy_validity.py`` (about 12 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace

from scipy.stats import spearmanr

from pipeline import seeds
from pipeline.evaluator import NO_HURDLES, evaluate
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


def tuned(programs: dict[str, Program], task: str, n_grid: int, seeds: Sequence[int],
          scale: float = 1.0):
    """Per program: its best over a grid of ``n_grid`` multipliers x2 apart, grown two steps
    past an edge that holds the best (``Tuned``)."""
    mults = [2.0 ** k for k in range(-(n_grid // 2), n_grid - n_grid // 2)]
    rows = tune(list(programs.values()), task, tf_evaluate, mults, seeds, scale, max_extend=2)
    return dict(zip(programs, rows, strict=True))


PROXY_FIELDS = {"scale": float, "n_seeds": int, "seed": int}


def parse_proxy(spec: str, multipliers: str | None) -> Proxy:
    """``teacher,digits_mlp`` or with fields, ``teacher:n_seeds=2:scale=2``, as a ``Proxy``."""
    tasks, *fields = spec.split(":")
    kwargs: dict = {} if multipliers is None else {
        "lr_multipliers": tuple(float(c) for c in multipliers.split(","))}
    for field in fields:
        key, _, value = field.partition("=")
        if key not in PROXY_FIELDS or not value:
            raise ValueError(f"proxy {spec!r}: a field reads NAME=VALUE with NAME one of "
                             f"{sorted(PROXY_FIELDS)}. Received: {field!r}")
        kwargs[key] = PROXY_FIELDS[key](value)
    return Proxy(tasks=tuple(tasks.split(",")), **kwargs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxies",
                    default="digits_mlp:scale=0.5;teacher,digits_mlp:scale=0.5;teacher",
                    help="';'-separated proxies, each a ','-separated task list, optionally "
                         "with ':n_seeds=N', ':seed=S' and ':scale=X'; the first is the default")
    ap.add_argument("--multipliers", default=None,
                    help="','-separated Proxy.lr_multipliers (default: the Proxy default)")
    ap.add_argument("--targets", default="synth_mlp,digits_conv,char_lm")
    ap.add_argument("--grid", type=int, default=10, help="target grid points, x2 apart")
    ap.add_argument("--draws", type=int, default=5,
                    help="draws of each proxy's init seeds (disjoint blocks); the figure is "
                         "the mean Spearman over them")
    ap.add_argument("--seeds", type=int, default=4,
                    help="target init seeds, split in two halves (even, at least 2)")
    args = ap.parse_args()
    if args.draws < 1:
        ap.error(f"--draws must be at least 1. Received: {args.draws}")
    if args.seeds < 2 or args.seeds % 2:
        ap.error(f"--seeds must be even and at least 2. Received: {args.seeds}")
    try:
        proxies = [parse_proxy(spec, args.multipliers) for spec in args.proxies.split(";")]
    except ValueError as e:
        ap.error(str(e))
    t0 = time.time()
    programs = panel()
    names = list(programs)
    targets = args.targets.split(",")
    halves = (range(args.seeds // 2), range(args.seeds // 2, args.seeds))

    print("== held-out targets: best of the grid (mean over seeds), '*' = best rate at an edge;")
    print(f"   each half of the {args.seeds} seeds tuned and ranked on its own")
    # ranks[half][target][name]
    ranks = [{t: {} for t in targets} for _ in halves]
    for target in targets:
        lr = make_task(target).learning_rate
        print(f"-- {target} (AdamW base lr {lr:g})")
        per_half = [tuned(programs, target, args.grid, half) for half in halves]
        for h, rows in enumerate(per_half):
            for k, n in enumerate(sorted(names, key=lambda n: -rows[n].mean)):
                ranks[h][target][n] = k + 1
        for n in sorted(names, key=lambda n: sum(r[target][n] for r in ranks)):
            cells = "   ".join(
                f"{rows[n].mean:>8.4f} ± {rows[n].std:.4f} at lr {lr * rows[n].multiplier:.2e}"
                f"{'*' if rows[n].at_edge else ' '}" for rows in per_half)
            print(f"   {n:<20} {cells}")
    target_score = {n: -statistics.fmean(r[t][n] for r in ranks for t in targets)
                    for n in names}
    half_score = [[-statistics.fmean(r[t][n] for t in targets) for n in names] for r in ranks]
    split_half = spearmanr(*half_score).statistic
    reliability = 2 * split_half / (1 + split_half) if split_half > -1 else float("nan")
    ceiling = math.sqrt(reliability) if reliability > 0 else 0.0
    print(f"\n== how far the targets agree with themselves ({len(names)} optimizers)")
    for t in targets:  # a target whose two halves disagree does not separate the panel
        rho = spearmanr([ranks[0][t][n] for n in names], [ranks[1][t][n] for n in names]).statistic
        print(f"   {t}: one half of the seeds vs the other: spearman {rho:.2f}")
    for a, b in itertools.combinations(targets, 2):
        rho = spearmanr([sum(r[a][n] for r in ranks) for n in names],
                        [sum(r[b][n] for r in ranks) for n in names]).statistic
        print(f"   {a} vs {b}: spearman {rho:.2f}")
    for t in targets if len(targets) > 2 else ():
        # what one held-out task predicts of the others: a proxy is another such task
        rest = [u for u in targets if u != t]
        rho = spearmanr([-sum(r[t][n] for r in ranks) for n in names],
                        [-sum(r[u][n] for r in ranks for u in rest) for n in names]).statistic
        print(f"   {t} vs the mean rank of the others: spearman {rho:.2f}")
    print(f"   one half of the seeds vs the other: spearman {split_half:.2f}; "
          f"all {args.seeds} seeds (Spearman-Brown): reliability {reliability:.2f}; "
          f"expected ceiling of any proxy's validity: {ceiling:.2f}")

    results = []
    for spec, bare in zip(args.proxies.split(";"), proxies, strict=True):
        proxy = calibrate(bare, seeds.adamw(), tf_evaluate)
        # Draw d trains on its own block of init seeds: how much of the figure is the proxy's
        # own seed noise shows as the spread over draws.
        draws = [replace(proxy, seed=bare.seed + d * bare.n_seeds) for d in range(args.draws)]
        all_scores = [score([programs[n] for n in names], p, tf_evaluate) for p in draws]
        rhos = [spearmanr([s.fitness for s in scores],
                          [target_score[n] for n in names]).statistic for scores in all_scores]
        results.append((spec, rhos))
        _print_proxy(spec, proxy, names, all_scores[0], target_score, args.grid)
        print(f"   spearman {rhos[0]:.2f}" + (
            "" if len(rhos) == 1 else f"; over {len(rhos)} draws of the proxy's init seeds: "
            f"{' '.join(f'{r:.2f}' for r in rhos)} (mean {statistics.fmean(rhos):.2f})"))
    print(f"\n({time.time() - t0:.0f} s)")
    for spec, rhos in results:
        spread = ("" if len(rhos) == 1 else
                  f" (mean of {len(rhos)} draws; {min(rhos):.2f}..{max(rhos):.2f})")
        print(f"proxy {spec}: spearman {statistics.fmean(rhos):.2f}{spread}")
    print(f"targets' reliability {reliability:.2f} (split-half {split_half:.2f}); "
          f"expected ceiling {ceiling:.2f}")
    print(f"proxy validity: spearman {statistics.fmean(results[0][1]):.2f} over {len(names)} "
          "optimizers")


def _print_proxy(spec: str, proxy: Proxy, names, scores, target_score, grid: int) -> None:
    """One proxy's noise, the warm start beside AdamW tuned on a fine grid, and the panel's
    proxy fitness (first draw) beside its mean rank on the targets."""
    print(f"\n== proxy {spec} at lr x {proxy.lr_multipliers}: noise (warm start's seed "
          f"std) {proxy.noise:.4g}")
    for task, mean, std in zip(proxy.tasks, proxy.calibration.means, proxy.calibration.stds,
                               strict=True):
        fine = tuned({"adamw": seeds.adamw()}, task, grid, range(3), proxy.scale)["adamw"]
        print(f"   warm start on {task}: best of K {mean:.4f} ± {std:.4f} (5 draws); "
              f"AdamW on a fine grid {fine.mean:.4f} ± {fine.std:.4f} (3 seeds)"
              f"{' at an edge' if fine.at_edge else ''}")
    for n, s in sorted(zip(names, scores, strict=True), key=lambda x: -x[1].fitness):
        print(f"   {n:<20} fitness {s.fitness:>10.4f}  target mean rank "
              f"{-target_score[n]:>5.2f}  lr x {s.lr_multipliers}")

if __name__ == "__main__":
    main()
