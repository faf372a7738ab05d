"""The ``lionforge`` command: discover, rediscover, evolve, funnel, simplify, benchmark, show,
export.

The commands that run flows take ``--gin_file`` and ``--gin_param`` (repeatable); ``main()``
parses the arguments and gin, then calls one flow. ``show`` and ``export`` only read: they take
no gin, start no Prefect, and never create or change an MLflow store.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import textwrap
import urllib.parse
from pathlib import Path

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
lionforge: evolve optimizer programs from AdamW (the search that found Lion), funnel the best
through larger tasks, simplify the winner, benchmark it against AdamW and Lion, and register it
in MLflow. Runs are tracked in MLflow (default: sqlite mlflow.db here; MLFLOW_TRACKING_URI
overrides) and orchestrated by Prefect (a temporary server unless PREFECT_API_URL is set).
"""

READ_ONLY = ("show", "export")  # no gin, no Prefect, no MLflow store created


def _gin_args(p: argparse.ArgumentParser, binding: str) -> None:
    p.add_argument("--gin_file", action="append", default=[], metavar="FILE",
                   help="a gin experiment file (repeatable; later files override earlier ones)")
    p.add_argument("--gin_param", action="append", default=[], metavar="BINDING",
                   help=f"a gin binding, e.g. {binding!r} (repeatable)")


def _command(sub, name: str, summary: str, description: str, example: str,
             gin_binding: str | None = None) -> argparse.ArgumentParser:
    """A subcommand with its description and its own example; it takes gin flags when it
    reads gin (``gin_binding``: the binding its ``--gin_param`` help shows)."""
    p = sub.add_parser(name, help=summary, description=textwrap.fill(description, 88),
                       epilog=f"example:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    if gin_binding is not None:
        _gin_args(p, gin_binding)
        p.add_argument("-v", "--verbose", action="store_true",
                       help="also print Prefect's and MLflow's log lines (discover, evolve and "
                            "rediscover always write them to RUN_DIR/lionforge.log)")
    return p


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
                   help="a program: a text file, a run dir or its summary.json, or an MLflow "
                        "model URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/PATH)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lionforge", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _search_commands(sub)
    _program_commands(sub)
    return parser


def _search_commands(sub) -> None:
    """The commands that search: discover, rediscover, evolve, funnel."""
    p = _command(sub, "discover", "evolve -> funnel -> simplify -> benchmark -> register",
                 "The whole pipeline in one tracked MLflow run, a child run per step; ends "
                 "with a table comparing the winner with Keras' AdamW and Lion and registers "
                 "the champion.",
                 "lionforge discover --gin_file gin/quickstart.gin",
                 "EvolveSettings.budget = 200")
    _search_args(p)

    p = _command(sub, "rediscover", "independent seeded discovers; which found Lion?",
                 "One discover per seed (Experiment.seed), each resumable in RUN_ROOT/seed_N "
                 "and nested under one MLflow run; each winner is classified by behaviour "
                 "(sign-momentum, adam-like, ...). Ends with 'rediscovered sign-momentum in k "
                 "of N seeds'.",
                 "lionforge rediscover --gin_file gin/lion_rediscovery.gin --seeds 0,1,2,3,4",
                 "FunnelSettings.top_k = 5")
    p.add_argument("--seeds", default="0,1,2,3,4", metavar="LIST",
                   help="comma-separated search seeds (default: 0,1,2,3,4)")
    p.add_argument("--run_root", default="runs/rediscover", metavar="DIR",
                   help="one run dir per seed under DIR; re-running resumes, finished seeds "
                        "are not run again (default: runs/rediscover)")

    p = _command(sub, "evolve", "the search on the proxy task (resumable)",
                 "Warm-started regularized evolution on the proxy task; checkpoints to the "
                 "run dir after every batch and writes DIR/summary.json (best_program, "
                 "best_fitness, candidates_evaluated).",
                 "lionforge evolve --gin_file gin/discover.gin --run_dir runs/a --budget 30000",
                 "EvolutionConfig.population_size = 64")
    _search_args(p)

    p = _command(sub, "funnel", "the top programs of a search through larger tasks",
                 "Reads the search in --run_dir, trains its top programs on the funnel's "
                 "larger tasks against the AdamW baseline, and prints the funnel table.",
                 "lionforge funnel --gin_file gin/discover.gin --run_dir runs/a",
                 "FunnelSettings.seeds = (0, 1)")
    p.add_argument("--run_dir", default=None, metavar="DIR",
                   help="the evolve run to take the candidates from (default: runs/NAME, "
                        "NAME being Experiment.name)")


def _program_commands(sub) -> None:
    """The commands that take a program: simplify, benchmark, show, export."""
    p = _command(sub, "simplify", "simplify a program to a readable rule",
                 "Removes dead code, applies algebraic rewrites checked by running both "
                 "programs, and drops statements whose removal costs less than the proxy's "
                 "noise; prints the simplified program.",
                 "lionforge simplify runs/a --gin_file gin/discover.gin",
                 "SimplifySettings.noise_fraction = 0.25")
    _program_arg(p)

    p = _command(sub, "benchmark", "a program against Keras' AdamW and Lion",
                 "Trains the program, Keras' AdamW and Lion on the benchmark tasks with the "
                 "same learning-rate grid, seeds and steps; prints the table and logs it to "
                 "MLflow.",
                 "lionforge benchmark models:/lionforge-discovered@champion "
                 "--gin_file gin/quickstart.gin --lr_multiplier 3",
                 "BenchmarkSettings.lion_lr_scale = 0.1")
    _program_arg(p)
    p.add_argument("--lr_multiplier", type=float, default=1.0,
                   help="the program's learning-rate scale found by the funnel (default 1)")

    p = _command(sub, "show", "print a program and what is recorded about it",
                 "Prints the program with what is known about it as '#' comment lines above "
                 "it, so the output is still a program: for a registered model its version, "
                 "aliases and tags, and the tags, metrics and tables of the run that "
                 "registered it and of that run's steps; for a run dir or summary.json what "
                 "the summary holds; for every program whether it reads lr. Only reads: an "
                 "MLflow store that is not there is an error, never created.",
                 "lionforge show models:/lionforge-discovered@champion")
    _program_arg(p)

    p = _command(sub, "export", "write a standalone Keras optimizer module",
                 "Writes a Python module holding a Keras optimizer class whose update_step "
                 "is the program as plain TensorFlow code; it needs only keras and "
                 "tensorflow. Only reads its source: an MLflow store that is not there is "
                 "an error, never created.",
                 "lionforge export models:/lionforge-discovered/3 --out my_optimizer.py "
                 "--class_name MyLion")
    _program_arg(p)
    p.add_argument("--out", required=True, metavar="FILE.py", help="the module to write")
    p.add_argument("--class_name", default="DiscoveredOptimizer", help="the optimizer class")


# ---- the commands ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """The ``lionforge`` command; ``argv`` None: this process's arguments (then libraries'
    log lines stay off the console until the process exits)."""
    args = build_parser().parse_args(argv)
    args.whole_process = argv is None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command in READ_ONLY:
        from flows.show import run_read_only

        return run_read_only(args)
    refused = _tracking_refused(os.environ.get("MLFLOW_TRACKING_URI", ""))
    if refused:  # before TensorFlow, gin and Prefect load: seconds on a busy machine
        print(f"lionforge {args.command}: error: {refused}", file=sys.stderr)
        return 2
    from flows import config
    from flows.show import MissingProgram
    from pipeline.statement import ProgramError
    from pipeline.tracking_server import TrackingUnavailable, check_reachable, default_tracking_uri

    try:
        conf = _configured(args, config)  # fail fast: gin parsed once, before Prefect starts
        check_reachable(default_tracking_uri(), conf.tracking.connect_timeout_s)
        _check_run_dir(args, conf)
        return _run(args, config, conf)
    except (config.ConfigError, ProgramError, FileNotFoundError, ValueError,
            TrackingUnavailable, MissingProgram) as err:
        print(f"lionforge {args.command}: error: {err}", file=sys.stderr)
        return 2


def _configured(args, config):
    """The command's configuration, gin parsed once; bad settings and seeds are errors."""
    conf = config.load(args.gin_file, args.gin_param)
    if getattr(args, "run_dir", "") is None:  # one run dir per experiment: never mixed
        args.run_dir = f"runs/{conf.experiment.name}"
    if args.command == "rediscover":
        from flows.rediscover import parse_seeds

        args.seeds = parse_seeds(args.seeds)
        if "EvolveSettings." not in conf.text and "Proxy." not in conf.text:
            raise config.ConfigError(
                f"{', '.join(args.gin_file) or 'no gin file'}: no search section "
                "(no EvolveSettings or Proxy bindings); include 'base.gin' or bind them")
    return conf


def _check_run_dir(args, conf) -> None:
    """Refuse a run dir of another search (discover, evolve) or one that holds no search
    (funnel, which reads one)."""
    if args.command in ("discover", "evolve"):
        from flows.rundir import check_run_dir

        check_run_dir(conf.evolve, conf.experiment, args.run_dir)
    if args.command == "funnel":
        from flows.rundir import SEARCH_FILE

        if not (Path(args.run_dir) / SEARCH_FILE).is_file():
            raise FileNotFoundError(f"{args.run_dir} is not a lionforge run dir (no "
                                    f"{SEARCH_FILE}); `lionforge evolve --run_dir "
                                    f"{args.run_dir}` makes one")


def _tracking_refused(uri: str) -> str | None:
    """Why an ``http(s)`` tracking ``uri`` cannot even be connected to (nothing listens
    there, or the host does not resolve), or None. Anything slower is left to the full
    probe, which waits ``TrackingSettings.connect_timeout_s``."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None  # a malformed port: the full probe words that error
    try:
        socket.create_connection((parts.hostname or "", port), timeout=1.0).close()
    except (ConnectionRefusedError, socket.gaierror) as err:
        return (f"MLflow tracking server {uri} is unreachable ({err}); start it, or point "
                "MLFLOW_TRACKING_URI at a running server or a sqlite:/// file")
    except OSError:
        return None  # a timeout or the like: the full probe decides
    return None


def _run(args, config, conf) -> int:
    program = None
    if args.command in ("simplify", "benchmark"):  # a missing program: before Prefect starts
        from flows.show import read_source

        program = read_source(args.program).program
    from flows import prefect_flows as flows  # sets up Prefect's logging: quiet() after it
    from flows.console import LOG_FILE, quiet

    # a log file only in run dirs these commands check or make themselves
    root = {"discover": vars(args).get("run_dir"), "evolve": vars(args).get("run_dir"),
            "rediscover": vars(args).get("run_root")}.get(args.command)
    with quiet(args.verbose, Path(root) / LOG_FILE if root else None, args.whole_process):
        return _run_flow(args, config, conf, flows, program)


def _run_flow(args, config, conf, flows, program) -> int:
    """The command's flow, given the configuration ``conf`` parsed from its gin flags."""
    runner = config.task_runner()
    gin = (args.gin_file, args.gin_param)
    if args.command == "rediscover":
        with config.prefect_api_for(runner):
            flows.rediscover_flow.with_options(task_runner=runner)(
                *gin, args.seeds, args.run_root, settings=conf)
    elif args.command == "discover":
        with config.prefect_api_for(runner):
            out = flows.discover_flow.with_options(task_runner=runner)(
                *gin, args.run_dir, args.budget, settings=conf)
        _print_discover(out)
    elif args.command == "evolve":
        with config.prefect_api_for(runner):
            out = flows.evolve_flow.with_options(task_runner=runner)(
                *gin, args.run_dir, args.budget, settings=conf)
        print(json.dumps(out, indent=2))
    elif args.command == "funnel":
        flows.funnel_flow(*gin, args.run_dir, settings=conf)
    elif args.command == "simplify":
        print(flows.simplify_flow(program.to_text(), *gin, settings=conf), end="")
    elif args.command == "benchmark":
        flows.benchmark_flow(program.to_text(), *gin, args.lr_multiplier, settings=conf)
    return 0


def _print_discover(out: dict) -> None:
    from pipeline.program import IGNORES_LR, Program

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
        print(textwrap.fill(f"note: {IGNORES_LR}", 92, initial_indent="  ",
                            subsequent_indent="  "))
    print("\ncomparison with AdamW and Lion (best of the learning-rate grid; 'discovered' is the "
          "funnel winner, or the baseline when there was none):")
    print(out["benchmark"])
    print(f"\nregistered as {out['registered']} (version {out['model_version']})")
    uri = out["tracking_uri"]
    if not uri.startswith(("http://", "https://")):
        print(f"MLflow: experiment {out['experiment']!r}; to browse it, run "
              f"`mlflow ui --backend-store-uri {uri}`, then open:")
    print(f"MLflow run: {out['run_url']}")


if __name__ == "__main__":
    sys.exit(main())
