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
import tempfile
import textwrap
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from pipeline.program import Program

__all__ = ["MissingProgram", "Source", "main", "read_source"]

DESCRIPTION = """\
lionforge: evolve optimizer programs from AdamW (the search that found Lion), funnel the best
through larger tasks, simplify the winner, benchmark it against AdamW and Lion, and register it
in MLflow. Runs are tracked in MLflow (default: sqlite mlflow.db here; MLFLOW_TRACKING_URI
overrides) and orchestrated by Prefect (a temporary server unless PREFECT_API_URL is set).
"""

READ_ONLY = ("show", "export")  # no gin, no Prefect, no MLflow store created
_PROGRAM_KEYS = ("best_program", "winner")  # where a summary.json holds its program
_MAX_TABLE_LINES = 60  # of a stage's text table printed by `show`


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

    p = _command(sub, "discover", "evolve -> funnel -> simplify -> benchmark -> register",
                 "The whole pipeline in one tracked MLflow run, a child run per stage; ends "
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
                 "registered it and of that run's stages; for a run dir or summary.json what "
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
    return parser


# ---- reading a program and what is recorded about it ---------------------------------------


class MissingProgram(LookupError):
    """A model URI that MLflow cannot resolve: no store, or no such model, version or run."""


@dataclass(frozen=True)
class Source:
    """A program and what is recorded about it, one line per fact (for ``show``)."""

    program: Program
    facts: tuple[str, ...] = ()


def read_source(ref: str) -> Source:
    """The program ``ref`` names (a file, a run dir or its summary.json, a ``models:/`` or
    ``runs:/`` URI) and what is recorded about it. Only reads: creates no MLflow store."""
    if ref.startswith(("models:/", "runs:/")):
        return _from_mlflow(ref)
    return _from_file(ref)


def _from_file(ref: str) -> Source:
    from pipeline.program import Program

    path = Path(ref)
    if path.is_dir():
        path = path / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"no program at {ref!r} (not a file, a run dir or a model URI)")
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".json":
        return Source(Program.parse(text), (f"from {path}",))
    data = json.loads(text)
    data = data if isinstance(data, dict) else {}
    program = next((data[k] for k in _PROGRAM_KEYS if isinstance(data.get(k), str)), None)
    if program is None:
        raise ValueError(f"{path} holds no 'best_program' or 'winner'")
    recorded = {k: v for k, v in data.items() if k not in _PROGRAM_KEYS
                and (v is None or isinstance(v, int | float | bool)
                     or isinstance(v, str) and "\n" not in v)}
    return Source(Program.parse(program), (f"from {path}", *_listing("", recorded)))


def _from_mlflow(ref: str) -> Source:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    from pipeline.registry import load_program
    from pipeline.tracking import default_tracking_uri

    uri = default_tracking_uri()
    _require_store(uri, ref)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    facts, version = [f"{ref} (tracking URI {uri})"], None
    try:
        if ref.startswith("models:/"):
            name, number = get_model_name_and_version(client, ref)
            version = client.get_model_version(name, str(number))
            aliases = f" (aliases: {', '.join(version.aliases)})" if version.aliases else ""
            facts += [f"{version.name} version {version.version}{aliases}",
                      *_listing("version tag ", version.tags)]
            run_id = version.run_id
            # The version just described, even if the alias moves meanwhile.
            program = load_program(f"models:/{name}/{version.version}", tracking_uri=uri)
        else:
            run_id = RunsArtifactRepository.parse_runs_uri(ref)[0]
            program = load_program(ref, tracking_uri=uri)
        if run_id:
            facts += _run_facts(client, run_id, "registered by run" if version else "run")
    except MlflowException as err:
        message = (err.message.strip().splitlines() or ["not found"])[0]
        raise MissingProgram(f"{ref}: {message} (tracking URI {uri})") from None
    return Source(program, tuple(facts))


def _require_store(uri: str, ref: str) -> None:
    """Raise unless the store at ``uri`` is there: an ``http(s)`` server that answers, an
    sqlite file holding MLflow's tables, a local store's folder. Creates nothing (MLflow
    would create a missing sqlite file or folder, tables included, just by being asked)."""
    from pipeline.tracking import check_reachable

    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # as the Tracker does
        check_reachable(uri)
        return
    missing = MissingProgram(f"{ref} not found: no MLflow store at tracking URI {uri} (run "
                             "where its mlflow.db is, or set MLFLOW_TRACKING_URI)")
    if uri.startswith("sqlite:"):
        path = uri.removeprefix("sqlite:").removeprefix("///").split("?", 1)[0]
        if not path or path == ":memory:" or not _is_mlflow_db(Path(path)):
            raise missing
    elif uri.startswith("file:") or "://" not in uri:  # a local file store: a folder
        from urllib.parse import unquote, urlparse

        folder = unquote(urlparse(uri).path) if uri.startswith("file:") else uri
        if not Path(folder).is_dir():
            raise missing
    # Other database servers: MLflow reports what it cannot find.


def _is_mlflow_db(path: Path) -> bool:
    """Whether ``path`` is an sqlite file holding MLflow's tables (opened read-only)."""
    import sqlite3

    if not path.is_file():
        return False
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except sqlite3.Error:
        return False
    return "alembic_version" in tables  # MLflow's schema marker


def _run_facts(client: MlflowClient, run_id: str, heading: str) -> list[str]:
    """The run's own tags and metrics, then each of its stages' (child runs): metrics and
    the text tables at the top of their artifacts (``funnel.txt``, ``benchmark.txt``)."""
    run = client.get_run(run_id)
    lines = [f"{heading} {run_id} ({run.info.run_name})",
             *_listing("  ", _user_tags(run.data.tags)), *_listing("  ", run.data.metrics)]
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    for child in children:
        stage = child.data.tags.get("stage", child.info.run_name)
        lines.append(f"stage {stage} (run {child.info.run_id})")
        lines += _listing("  ", {**_user_tags(child.data.tags), **child.data.metrics})
        for item in client.list_artifacts(child.info.run_id):
            if not item.is_dir and item.path.endswith(".txt"):
                lines.append(f"  {item.path}:")
                lines += ["    " + line
                          for line in _read_text(client, child.info.run_id, item.path)]
    return lines


def _user_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith("mlflow.") and k != "stage"}


def _read_text(client: MlflowClient, run_id: str, path: str) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(client.download_artifacts(run_id, path, tmp))
        lines = local.read_text(encoding="utf-8", errors="replace").splitlines()
    if len(lines) > _MAX_TABLE_LINES:
        lines = [*lines[:_MAX_TABLE_LINES], f"... ({len(lines) - _MAX_TABLE_LINES} more lines)"]
    return lines


def _listing(indent: str, items: dict) -> list[str]:
    return [f"{indent}{k} = {_value(v)}" for k, v in sorted(items.items())]


def _value(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def show_text(source: Source) -> str:
    """``show``'s output: the facts as ``#`` comments (characters a program may not hold
    replaced by '?'), whether the rule reads lr, then the program."""
    from pipeline.program import IGNORES_LR

    lr = (f"warning: {IGNORES_LR}" if not source.program.reads_lr
          else "reads lr: yes (learning_rate= and schedules scale its step)")
    comments = "".join(f"# {_printable(line)}\n" for line in (*source.facts, lr))
    return comments + source.program.to_text()


def _printable(line: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in line)


# ---- the commands ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """The ``lionforge`` command; ``argv`` None: this process's arguments (then libraries'
    log lines stay off the console until the process exits)."""
    args = build_parser().parse_args(argv)
    args.whole_process = argv is None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command in READ_ONLY:
        return _read_only(args)
    refused = _tracking_refused(os.environ.get("MLFLOW_TRACKING_URI", ""))
    if refused:  # before TensorFlow, gin and Prefect load: seconds on a busy machine
        print(f"lionforge {args.command}: error: {refused}", file=sys.stderr)
        return 2
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
        timeout = config.configured("TrackingSettings").connect_timeout_s
        check_reachable(default_tracking_uri(), timeout)  # an unreachable server: refused
        if args.command in ("discover", "evolve"):  # refuse a run dir of another search
            from flows.stages import check_run_dir

            check_run_dir(config.configured("EvolveSettings"), config.configured("Experiment"),
                          args.run_dir)
        if args.command == "funnel":  # it reads a search: refuse a dir that holds none
            from flows.stages import SEARCH_FILE

            if not (Path(args.run_dir) / SEARCH_FILE).is_file():
                raise FileNotFoundError(f"{args.run_dir} is not a lionforge run dir (no "
                                     f"{SEARCH_FILE}); `lionforge evolve --run_dir "
                                     f"{args.run_dir}` makes one")
        return _run(args, config)
    except (config.ConfigError, ProgramError, FileNotFoundError, ValueError,
            TrackingUnavailable, MissingProgram) as err:
        print(f"lionforge {args.command}: error: {err}", file=sys.stderr)
        return 2


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


def _read_only(args) -> int:
    """``show`` and ``export``: no gin, no Prefect; errors are one line."""
    from pipeline.program import IGNORES_LR, ProgramError

    try:
        source = read_source(args.program)
        if args.command == "show":
            print(show_text(source), end="")
            return 0
        from pipeline.export import write_module

        write_module(source.program, args.out, class_name=args.class_name)
        print(f"wrote {args.out}")
        if not source.program.reads_lr:
            print(f"lionforge export: warning: {IGNORES_LR}", file=sys.stderr)
        return 0
    except (ProgramError, OSError, ValueError, MissingProgram) as err:  # OSError: also
        print(f"lionforge {args.command}: error: {err}", file=sys.stderr)  # unreachable
        return 2


def _run(args, config) -> int:
    program = None
    if args.command in ("simplify", "benchmark"):  # a missing program: before Prefect starts
        program = read_source(args.program).program
    from flows import prefect_flows as flows  # sets up Prefect's logging: quiet() after it
    from flows.console import LOG_FILE, quiet

    # a log file only in run dirs these commands check or make themselves
    root = {"discover": vars(args).get("run_dir"), "evolve": vars(args).get("run_dir"),
            "rediscover": vars(args).get("run_root")}.get(args.command)
    with quiet(args.verbose, Path(root) / LOG_FILE if root else None, args.whole_process):
        return _run_flow(args, config, flows, program)


def _run_flow(args, config, flows, program) -> int:
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
        print(flows.simplify_flow(program.to_text(), args.gin_file, args.gin_param), end="")
    elif args.command == "benchmark":
        flows.benchmark_flow(program.to_text(), args.gin_file, args.gin_param,
                             args.lr_multiplier)
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
