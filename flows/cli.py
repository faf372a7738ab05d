"""The ``lionforge`` command: discover, rediscover, evolve, funnel, simplify, benchmark, show,
export.

Every command takes ``--gin_file`` (repeatable) and ``--gin_param`` (repeatable). ``main()``
parses the arguments and gin, then calls one flow; nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]

DESCRIPTION = """\
lionforge: evolve optimizer programs from AdamW (the search that found Lion), funnel the best
through larger tasks, simplify the winner, benchmark it against AdamW and Lion, and register it
in MLflow. Runs are tracked in MLflow (default: sqlite mlflow.db here; MLFLOW_TRACKING_URI
overrides) and orchestrated by Prefect (a temporary server unless PREFECT_API_URL is set).
"""


def _gin_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gin_file", action="append", default=[], metavar="FILE",
                   help="a gin experiment file (repeatable; later files override earlier ones)")
    p.add_argument("--gin_param", action="append", default=[], metavar="BINDING",
                   help="a gin binding, e.g. 'EvolveSettings.budget = 200' (repeatable)")


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run_dir", default=None, metavar="DIR",
                   help="where the search state and checkpoints live; re-running the same "
                        "command with the same DIR resumes it, and a DIR whose search was "
                        "started with other settings is refused (default: runs/NAME, NAME "
                        "being Experiment.name)")
    p.add_argument("--budget", type=int, default=None, metavar="N",
                   help="candidates to propose in total (default: EvolveSettings.budget)")


def _program_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("program", metavar="PROGRAM",
                   help="a program: a text file, a run dir's summary.json, or an MLflow model "
                        "URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/PATH)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lionforge", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("discover", help="evolve -> funnel -> simplify -> benchmark -> register",
                       description="The whole pipeline in one tracked run; ends with a table "
                                   "comparing the winner with AdamW and Lion.")
    _gin_args(p)
    _search_args(p)

    p = sub.add_parser("rediscover", help="independent seeded discovers; which found Lion?",
                       description="One discover per seed (Experiment.seed), each resumable in "
                                   "RUN_ROOT/seed_N and nested under one MLflow run; each "
                                   "winner is classified by behaviour (sign-momentum, adam-like, "
                                   "...). Ends with 'rediscovered sign-momentum in k of N seeds'. "
                                   "Example: lionforge rediscover --gin_file "
                                   "gin/lion_rediscovery.gin --seeds 0,1,2,3,4")
    _gin_args(p)
    p.add_argument("--seeds", default="0,1,2,3,4", metavar="LIST",
                   help="comma-separated search seeds (default: 0,1,2,3,4)")
    p.add_argument("--run_root", default="runs/rediscover", metavar="DIR",
                   help="one run dir per seed under DIR; re-running resumes, finished seeds "
                        "are not run again (default: runs/rediscover)")

    p = sub.add_parser("evolve", help="the search on the proxy task (resumable)",
                       description="Warm-started regularized evolution; writes "
                                   "DIR/summary.json (best_program, best_fitness, "
                                   "candidates_evaluated).")
    _gin_args(p)
    _search_args(p)

    p = sub.add_parser("funnel", help="the top programs of a search through larger tasks",
                       description="Reads the search in --run_dir; prints the funnel table.")
    _gin_args(p)
    p.add_argument("--run_dir", default=None, metavar="DIR",
                   help="the evolve run to take the candidates from (default: runs/NAME, "
                        "NAME being Experiment.name)")

    p = sub.add_parser("simplify", help="simplify a program to a readable rule")
    _gin_args(p)
    _program_arg(p)

    p = sub.add_parser("benchmark", help="a program against Keras' AdamW and Lion")
    _gin_args(p)
    _program_arg(p)
    p.add_argument("--lr_multiplier", type=float, default=1.0,
                   help="the program's learning-rate scale found by the funnel (default 1)")

    p = sub.add_parser("show", help="print a logged or registered program")
    _gin_args(p)
    _program_arg(p)

    p = sub.add_parser("export", help="write a standalone Keras optimizer module")
    _gin_args(p)
    _program_arg(p)
    p.add_argument("--out", required=True, metavar="FILE.py", help="the module to write")
    p.add_argument("--class_name", default="DiscoveredOptimizer", help="the optimizer class")
    return parser


def load_program_arg(ref: str):
    """A program from a file, a summary.json, or an MLflow model URI."""
    from pipeline.program import Program

    if ref.startswith(("models:/", "runs:/")):
        from pipeline.registry import load_program

        return load_program(ref)
    path = Path(ref)
    if path.is_dir():
        path = path / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"no program at {ref!r} (not a file, a run dir or a model URI)")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        text = data.get("best_program") or data.get("winner")
        if not isinstance(text, str):
            raise ValueError(f"{path} holds no 'best_program' or 'winner'")
    return Program.parse(text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from flows import config
    from pipeline.program import ProgramError
    from pipeline.tracking import TrackingUnavailable, check_reachable, default_tracking_uri

    try:
        text = config.parse(args.gin_file, args.gin_param)  # fail fast, before Prefect starts
        config.check()
        if getattr(args, "run_dir", "") is None:  # one run dir per experiment: never mixed
            args.run_dir = f"runs/{config.configured('Experiment').name}"
        if args.command == "rediscover":
            from flows.rediscover import parse_seeds

            args.seeds = parse_seeds(args.seeds)
            if "EvolveSettings." not in text and "Proxy." not in text:
                raise config.ConfigError(
                    f"{', '.join(args.gin_file) or 'no gin file'}: no search section "
                    "(no EvolveSettings or Proxy bindings); include 'base.gin' or bind them")
        if args.command not in ("show", "export"):  # so does an unreachable MLflow server
            timeout = config.configured("TrackingSettings").connect_timeout_s
            check_reachable(default_tracking_uri(), timeout)
        if args.command in ("discover", "evolve"):  # refuse a run dir of another search
            from flows.stages import check_run_dir

            check_run_dir(config.configured("EvolveSettings"), config.configured("Experiment"),
                          args.run_dir)
        return _run(args, config)
    except (config.ConfigError, ProgramError, FileNotFoundError, ValueError,
            TrackingUnavailable) as err:
        print(f"lionforge {args.command}: error: {err}", file=sys.stderr)
        return 2


def _run(args, config) -> int:
    if args.command in ("show", "export"):
        program = load_program_arg(args.program)
        if args.command == "show":
            print(program.to_text(), end="")
        else:
            from pipeline.export import write_module

            write_module(program, args.out, class_name=args.class_name)
            print(f"wrote {args.out}")
        return 0

    from flows import prefect_flows as flows

    runner = config.task_runner()
    if args.command == "rediscover":
        with config.prefect_api_for(runner):
            flows.rediscover_flow.with_options(task_runner=runner)(
                args.gin_file, args.gin_param, args.seeds, args.run_root
            )
    elif args.command == "discover":
        with config.prefect_api_for(runner):
            out = flows.discover_flow.with_options(task_runner=runner)(
                args.gin_file, args.gin_param, args.run_dir, args.budget
            )
        _print_discover(out)
    elif args.command == "evolve":
        with config.prefect_api_for(runner):
            out = flows.evolve_flow.with_options(task_runner=runner)(
                args.gin_file, args.gin_param, args.run_dir, args.budget
            )
        print(json.dumps(out, indent=2))
    elif args.command == "funnel":
        flows.funnel_flow(args.gin_file, args.gin_param, args.run_dir)
    elif args.command == "simplify":
        program = load_program_arg(args.program)
        print(flows.simplify_flow(program.to_text(), args.gin_file, args.gin_param), end="")
    elif args.command == "benchmark":
        program = load_program_arg(args.program)
        flows.benchmark_flow(program.to_text(), args.gin_file, args.gin_param,
                             args.lr_multiplier)
    return 0


def _print_discover(out: dict) -> None:
    from pipeline.program import Program

    ev = out["evolve"]
    print()
    print(f"search: {ev['candidates_evaluated']} candidates, {ev['evaluations']} trained; "
          f"cache hit rate {ev['structural_hit_rate'] + ev['fec_hit_rate']:.1%}")
    print("\nfunnel (mean metric over seeds; 'beats' = beats the AdamW baseline):")
    print(out["funnel"])
    print(f"proxy noise (the warm start's seed-to-seed std of the proxy fitness): "
          f"{out['proxy_noise']:.4g}")
    if out["winner"] is None:
        print("\nno candidate beat AdamW on the funnel's first stage: nothing to simplify")
    else:
        verdict = ("beat AdamW at every stage of the funnel" if out["beat_baseline_in_funnel"]
                   else "did NOT beat AdamW on the funnel's last stage: not registered")
        print(f"\nfunnel winner ({verdict}), simplified:")
        print("  " + out["winner"].rstrip().replace("\n", "\n  "))
    if not out["beat_baseline_in_funnel"]:
        print("champion: the baseline itself (nothing found beat it where it was validated)")
    if not Program.parse(out["champion"]).reads_lr:
        print("  note: this rule never reads lr: its step size is built in, and the learning\n"
              "  rate given to it (ProgramOptimizer(learning_rate=...)) has no effect")
    print("\ncomparison with AdamW and Lion (best of the learning-rate grid; 'discovered' is the "
          "funnel winner, or the baseline when there was none):")
    print(out["benchmark"])
    print(f"\nregistered as {out['registered']} (version {out['model_version']})")
    print(f"MLflow: experiment {out['experiment']!r}, run {out['run_id']}; "
          "open it with `mlflow ui --backend-store-uri sqlite:///mlflow.db`")


if __name__ == "__main__":
    sys.exit(main())
