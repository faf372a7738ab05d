"""Evolution vs hyperparameter-only search vs random search, at equal budget, judged on
held-out targets.

The papers' ordering is evolution > hyperparameter-only > random. Each strategy searches the
same proxy fitness (``pipeline.proxy``, calibrated on the AdamW warm start) for the same
number of candidates from the same warm start. Then, as ``lionforge discover`` does, its
``--top-k`` distinct programs go through the funnel (``--funnel``, the stages of
``gin/base.gin``, against AdamW): the program a strategy delivers is the funnel's
winner when that beat AdamW at every stage, else AdamW itself (nothing better was found).
A proxy's best alone can exploit the proxy (a step scaled by ``1 - dot(w, g)`` is stable on
a 600-parameter network and diverges on larger ones at every rate); the funnel is the
pipeline's defence, so every strategy gets it. The delivered program is then tuned on each
held-out target (a grid of learning rates x2 apart around the task's AdamW rate, several init
seeds), beside AdamW. Per target the table gives mean ± seed std at the best rate ('*' when
that rate is at an edge of the grid); the last column is the mean over targets of
``(score - AdamW's) / AdamW's seed std``, and the last line the ordering by it ('=' where two
strategies are less than one seed std apart).

Run: ``.venv/bin/python benchmarks/search_strategies.py`` (about 15 minutes on 2 cores with
the teacher proxy it had before; the defaults are now ``base.gin``'s proxy and funnel, not yet
timed).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from dataclasses import replace

from pipeline import seeds
from pipeline.baselines import hyperparameter_config, random_search_config
from pipeline.evaluator import Hurdles, evaluate
from pipeline.evolve import Search
from pipeline.funnel import Stage, run_funnel, top_k_of_records
from pipeline.proxy import Proxy, calibrate, score, tune
from pipeline.screen import Verdict
from pipeline.search_config import Budget, EvolutionConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=2000, help="candidates per search")
    ap.add_argument("--proxy", default="digits_mlp", help="','-separated proxy tasks")
    ap.add_argument("--proxy-scale", type=float, default=0.5, help="the proxy tasks' scale")
    ap.add_argument("--targets", default="synth_mlp,digits_conv,char_lm")
    ap.add_argument("--search-seeds", default="0,1")
    ap.add_argument("--target-seeds", type=int, default=2)
    ap.add_argument("--grid", type=int, default=8, help="target grid points, x2 apart")
    ap.add_argument("--top-k", type=int, default=5, help="programs per search into the funnel")
    ap.add_argument("--funnel", default="digits_mlp:2,digits_mlp:10",
                    help="','-separated TASK:SCALE funnel stages ('' for none)")
    args = ap.parse_args()
    stages = [Stage(f"S{i + 1}", task, float(scale)) for i, (task, scale) in enumerate(
        spec.split(":") for spec in args.funnel.split(",") if spec)]
    t0 = time.time()
    hurdles = Hurdles()

    def task_evaluate(programs, task, scale, seed):
        return [r.fitness for r in evaluate(list(programs), task, scale, seed, hurdles=hurdles)]

    warm = seeds.adamw()
    proxy = calibrate(Proxy(tasks=tuple(args.proxy.split(",")), scale=args.proxy_scale), warm,
                      task_evaluate)

    def search_evaluate(programs):
        return [Verdict(s.fitness, "", s.lr_multipliers)
                for s in score(programs, proxy, task_evaluate)]

    base = EvolutionConfig(population_size=300, batch_size=128)
    strategies = {"evolution": base, "hparam-only": hyperparameter_config(base),
                  "random": random_search_config(base)}
    def stage_evaluate(programs, stage, seed):
        return task_evaluate(programs, stage.task, stage.scale, seed)

    delivered = {}
    for name, config in strategies.items():
        for rng_seed in map(int, args.search_seeds.split(",")):
            search = Search(replace(config), warm, rng_seed=rng_seed)
            search.run(search_evaluate, Budget(candidates=args.budget))
            program, how = search.best.program, "proxy's best (no funnel)"
            if stages:
                funnel = run_funnel(top_k_of_records(search.records, args.top_k), stages,
                                    stage_evaluate, baseline=warm, seeds=(0, 1))
                program, how = ((funnel.winner, "funnel winner") if funnel.beat_baseline
                                else (warm, "AdamW: nothing beat it through the funnel"))
            delivered[name, rng_seed] = program
            print(f"{name:<12} seed {rng_seed}: proxy {search.best.fitness:.4f} "
                  f"(warm start {search.seed_individual.fitness:.4f}, noise {proxy.noise:.4g}), "
                  f"{search.stats.candidates} candidates; delivers the {how}")
    mults = [2.0 ** k for k in range(-(args.grid // 2), args.grid - args.grid // 2)]
    contenders = {"adamw": warm} | {f"{n} #{s}": p for (n, s), p in delivered.items()}
    names = list(contenders)
    table = {}
    for target in args.targets.split(","):
        rows = tune(list(contenders.values()), target, task_evaluate, mults,
                    range(args.target_seeds))
        table[target] = dict(zip(names, rows, strict=True))
    print(f"\ntargets (mean ± seed std at the best of {args.grid} rates x2 apart, "
          f"{args.target_seeds} seeds; '*' best rate at a grid edge):")
    print(f"{'program':<16}" + "".join(f"{t:>26}" for t in table) + f"{'z vs AdamW':>12}")
    z = {}
    for n in names:
        cells, zs = [], []
        for rows in table.values():
            r, a = rows[n], rows["adamw"]
            edge = "*" if r.at_edge else " "
            cells.append(f"{r.mean:>10.4f} ± {r.std:.4f} x{r.multiplier:<5.3g}{edge}")
            zs.append((r.mean - a.mean) / max(a.std, 1e-9))
        z[n] = statistics.fmean(zs)
        print(f"{n:<16}" + "".join(f"{c:>26}" for c in cells) + f"{z[n]:>12.2f}")
    by_strategy = {s: statistics.fmean(z[n] for n in names if n.startswith(s + " "))
                   for s in strategies}
    ranked = sorted(by_strategy, key=lambda s: -by_strategy[s])
    # Within one AdamW seed std of each other (on average over targets) is a tie, not an order.
    order = ranked[0] + "".join(
        (" > " if by_strategy[a] - by_strategy[b] >= 1.0 else " = ") + b
        for a, b in itertools.pairwise(ranked))
    for n in names[1:]:
        print(f"\n{n}:\n  " + contenders[n].to_text().rstrip().replace("\n", "\n  "))
    print(f"\n({time.time() - t0:.0f} s)")
    print("search strategies on held-out targets (mean z vs AdamW): " + "; ".join(
        f"{s} {by_strategy[s]:+.2f}" for s in strategies) + f"; order: {order}")


if __name__ == "__main__":
    main()
