"""The lionforge command: help, errors people can act on, show/export, run dirs.

`lionforge evolve` as a user runs it (quiet console, -v, resume, refusing another search's run
dir) is tested end to end in tests/test_resume.py, on the run it kills and resumes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import build_parser, main
from pipeline import Program, seeds

ROOT = Path(__file__).resolve().parent.parent
SMOKE = str(ROOT / "gin" / "smoke.gin")


def test_help_names_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("discover", "evolve", "funnel", "simplify", "benchmark", "show", "export"):
        assert command in out


def test_evolve_help_explains_run_dir_and_budget(capsys):
    with pytest.raises(SystemExit):
        main(["evolve", "--help"])
    out = capsys.readouterr().out
    assert "--run_dir" in out and "resumes" in out and "--budget" in out


GIN_COMMANDS = ("discover", "rediscover", "evolve", "funnel", "simplify", "benchmark")


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_every_command_has_a_description_and_its_own_example_that_parses(capsys):
    examples = {}
    for command in (*GIN_COMMANDS, "show", "export"):
        out = _help(command, capsys)
        description = out.split("\n\n")[1]
        assert description.strip() and not description.startswith(("positional", "options"))
        example = out.split("example:\n", 1)[1].strip()
        assert example.startswith(f"lionforge {command} ")
        assert build_parser().parse_args(shlex.split(example)[1:]).command == command
        examples[command] = example
    assert len(set(examples.values())) == len(examples)


def test_gin_flags_are_on_the_commands_that_read_gin_each_with_its_own_binding(capsys):
    from flows import config

    bindings = set()
    for command in GIN_COMMANDS:
        out = " ".join(_help(command, capsys).split())
        assert "--gin_file FILE" in out
        binding = re.search(r"--gin_param BINDING a gin binding, e\.g\. '([^']+)'", out)[1]
        config.load([SMOKE], [binding])  # a binding that configures lionforge
        bindings.add(binding)
    assert len(bindings) == len(GIN_COMMANDS)
    for command, argv in [("show", ["p.txt"]), ("export", ["p.txt", "--out", "o.py"])]:
        assert "--gin" not in _help(command, capsys)
        with pytest.raises(SystemExit) as exit_:
            main([command, *argv, "--gin_file", SMOKE])
        assert exit_.value.code == 2
        assert "unrecognized arguments: --gin_file" in capsys.readouterr().err


def test_defining_the_flows_prints_no_schema_warnings():
    """Prefect builds each flow's parameter schema when the flow is defined; the parsed
    ``settings`` it may be handed is left out of it (its nested defaults are programs, which
    JSON cannot hold, and each once printed a screenful of warnings before any output)."""
    code = ("import flows.prefect_flows as f; "
            "print(sorted(f.discover_flow.parameters.properties))")
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                         text=True, timeout=300, check=True)
    assert "JsonSchemaWarning" not in out.stderr
    assert "'gin_files'" in out.stdout and "'settings'" not in out.stdout


def test_a_gin_typo_names_the_file_the_line_and_the_binding(tmp_path, capsys):
    bad = tmp_path / "typo.gin"
    bad.write_text(f"include '{SMOKE}'\nEvolveSettings.budgte = 5\n")
    assert main(["evolve", "--gin_file", str(bad), "--run_dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "typo.gin" in err and "line 2" in err and "budgte" in err
    assert not (tmp_path / "r").exists()  # nothing ran


def test_an_unknown_binding_on_the_command_line_is_an_error(capsys):
    assert main(["evolve", "--gin_file", SMOKE, "--gin_param", "Nope.x = 1"]) == 2
    assert "Nope" in capsys.readouterr().err


@pytest.mark.parametrize("param,binding", [
    ("Proxy.lr_multipliers = ()", "Proxy.lr_multipliers"),
    ("Proxy.lr_multipliers = (1.0, -2.0)", "Proxy.lr_multipliers"),
    ("Proxy.tasks = ('teacher', 'nope')", "Proxy.tasks"),
    ("SimplifySettings.noise_fraction = -0.5", "SimplifySettings.noise_fraction"),
    ("BenchmarkSettings.lion_lr_scale = 0.0", "BenchmarkSettings.lion_lr_scale"),
])
def test_an_out_of_range_setting_is_one_line_naming_its_binding_and_nothing_starts(
        tmp_path, monkeypatch, capsys, param, binding):
    monkeypatch.chdir(tmp_path)
    assert main(["discover", "--gin_file", SMOKE, "--gin_param", param,
                 "--run_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert binding in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no run dir, no MLflow store


def test_a_missing_gin_file_is_an_error(capsys):
    assert main(["evolve", "--gin_file", "no/such.gin"]) == 2
    assert "gin file not found" in capsys.readouterr().err


def test_show_prints_a_program_from_a_file_or_a_summary(tmp_path, capsys):
    (tmp_path / "p.txt").write_text(seeds.lion().to_text())
    assert main(["show", str(tmp_path / "p.txt")]) == 0
    out = capsys.readouterr().out
    assert out.endswith(seeds.lion().to_text())
    assert Program.parse(out) == seeds.lion()  # the facts are comments: still a program
    assert "# reads lr: yes" in out and "warning" not in out
    summary = {"best_program": seeds.adamw().to_text(), "best_fitness": -0.125,
               "candidates_evaluated": 16}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert main(["show", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert Program.parse(out) == seeds.adamw()
    assert "# best_fitness = -0.125\n" in out and "# candidates_evaluated = 16\n" in out


def test_show_warns_when_the_rule_never_reads_lr(tmp_path, capsys):
    fixed_step = "m = interp(g, m, 0.9)\nu = sign(m)\nupdate = u * 0.001\n"
    (tmp_path / "p.txt").write_text(fixed_step)
    assert main(["show", str(tmp_path / "p.txt")]) == 0
    out = capsys.readouterr().out
    assert "# warning: this rule never reads lr" in out and "reads lr: yes" not in out
    assert Program.parse(out) == Program.parse(fixed_step)


def test_show_refuses_hostile_program_text(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("update = __import__(g)\n")
    assert main(["show", str(tmp_path / "p.txt")]) == 2
    assert "names may not start with '__'" in capsys.readouterr().err


def test_export_writes_a_standalone_module(tmp_path, capsys):
    (tmp_path / "p.txt").write_text(seeds.lion().to_text())
    out = tmp_path / "my_opt.py"
    assert main(["export", str(tmp_path / "p.txt"), "--out", str(out),
                 "--class_name", "MyLion"]) == 0
    text = out.read_text()
    assert "class MyLion(keras.optimizers.Optimizer)" in text
    assert "import pipeline" not in text and "from pipeline" not in text


def _register_discover_like(program: Program) -> str:
    """A run shaped like a discover's (tags; stage child runs with metrics and a text table)
    that registers ``program`` as lionforge-discovered@champion; returns the run id."""
    from pipeline.tracking import Tracker

    tracker = Tracker("cli")
    with tracker.run("discover") as run_id:
        with tracker.child_run("evolve"):
            tracker.log_metrics({"best_fitness": -0.25, "proxy_noise": 0.0125})
        with tracker.child_run("benchmark"):
            tracker.log_text("optimizer  digits_mlp\nadamw          0.3125\n", "benchmark.txt")
        tracker.set_tags({"beat_baseline": "True", "champion": "discovered"})
        tracker.register(program)
    return run_id


@pytest.mark.parametrize("ref", ["models:/lionforge-discovered@champion",
                                 "models:/lionforge-discovered/1"])
def test_show_a_registered_model_prints_its_version_and_what_its_runs_recorded(
        store, tmp_path, capsys, ref):
    run_id = _register_discover_like(seeds.lion())
    db = (tmp_path / "store.db").read_bytes()
    assert main(["show", ref]) == 0
    out = capsys.readouterr().out
    assert Program.parse(out) == seeds.lion()
    assert f"# {ref} (tracking URI {store})\n" in out
    assert "# lionforge-discovered version 1 (aliases: champion)\n" in out
    assert f"# version tag structural_hash = {seeds.lion().structural_hash()}\n" in out
    assert f"# registered by run {run_id} (discover)\n" in out
    assert "#   beat_baseline = True\n" in out
    assert "# stage evolve (run " in out and "#   best_fitness = -0.25\n" in out
    assert "#   benchmark.txt:\n#     optimizer  digits_mlp\n#     adamw          0.3125\n" in out
    assert "# reads lr: yes" in out
    assert (tmp_path / "store.db").read_bytes() == db  # only read


def test_export_writes_the_module_of_a_registered_model(store, tmp_path, capsys):
    _register_discover_like(seeds.lion())
    out = tmp_path / "champion.py"
    assert main(["export", "models:/lionforge-discovered@champion", "--out", str(out)]) == 0
    assert "class DiscoveredOptimizer(keras.optimizers.Optimizer)" in out.read_text()


@pytest.mark.parametrize("command", ["show", "export", "simplify", "benchmark"])
def test_a_model_uri_without_an_mlflow_store_is_one_line_and_creates_none(
        tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    extra = {"export": ["--out", "o.py"], "simplify": ["--gin_file", SMOKE],
             "benchmark": ["--gin_file", SMOKE]}.get(command, [])
    assert main([command, "models:/x@champion", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    uri = "sqlite:///" + (tmp_path / "mlflow.db").as_posix()
    assert len(err) == 1 and "models:/x@champion not found" in err[0] and uri in err[0]
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, no mlartifacts, no o.py


def test_a_missing_model_or_run_in_a_store_is_one_line_and_changes_nothing(
        store, tmp_path, capsys):
    db = (tmp_path / "store.db").read_bytes()
    for ref, missing in [("models:/nope@champion", "nope"), ("models:/nope/3", "nope"),
                         ("runs:/0123456789abcdef/optimizer", "0123456789abcdef")]:
        assert main(["show", ref]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and missing in err[0] and store in err[0], err
    assert (tmp_path / "store.db").read_bytes() == db
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]


def test_an_unreachable_tracking_server_is_one_line_for_show_and_export(
        tmp_path, monkeypatch, capsys, free_port):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for argv in (["show", "models:/x@champion"],
                 ["export", "models:/x@champion", "--out", "o.py"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{uri} is unreachable" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_show_imports_neither_tensorflow_nor_gin_nor_prefect(store, tmp_path):
    # Reading and printing a program needs none of them: a file needs no MLflow either, a
    # registered model only MLflow.
    (tmp_path / "p.txt").write_text(seeds.lion().to_text())
    _register_discover_like(seeds.lion())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
           "MLFLOW_TRACKING_URI": store}
    heavy = "('tensorflow', 'keras', 'gin', 'prefect', 'flows.config', 'mlflow')"
    for ref, loaded in (("p.txt", "[]"), ("models:/lionforge-discovered@champion",
                                          "['mlflow']")):
        code = (f"import sys; from flows.cli import main; assert main(['show', {ref!r}]) == 0; "
                f"print(sorted(m for m in {heavy} if m in sys.modules))")
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "update = u * lr" in out.stdout
        assert out.stdout.splitlines()[-1] == loaded, (ref, out.stdout[-300:])


def test_the_default_run_dir_is_per_experiment(tmp_path, monkeypatch):
    from flows import config
    from flows.rundir import open_run_dir

    monkeypatch.chdir(tmp_path)
    parsed = build_parser().parse_args(["discover", "--gin_file", SMOKE])
    assert parsed.run_dir is None  # main() makes it runs/NAME once gin is parsed
    config.parse([SMOKE], [])
    exp, cfg = config.configured("Experiment"), config.configured("EvolveSettings")
    open_run_dir(cfg, exp, tmp_path / "runs" / exp.name)  # new: records its settings
    assert json.loads((tmp_path / "runs" / "smoke" / "settings.json").read_text())[
        "Proxy.tasks"] == ["teacher"]


def test_funnel_refuses_a_dir_that_holds_no_search_and_creates_nothing(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("not a search")
    assert main(["funnel", "--gin_file", SMOKE, "--run_dir", str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a lionforge run dir (no search.json)" in err[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "notes"]


# smoke.gin is the tests' own plumbing check (one tiny task throughout), not an experiment.
@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "gin").glob("*.gin")
                                        if p.name != "smoke.gin"))
def test_every_shipped_experiment_benchmarks_only_tasks_it_never_searched_or_funnelled(name):
    # A result counts where it holds on tasks the search never saw: a gin file whose benchmark
    # names a proxy or funnel task would report how well the search fitted that task.
    from flows import config

    cfg = config.load([str(ROOT / "gin" / name)])
    seen = set(cfg.evolve.proxy.tasks) | {stage.task for stage in cfg.funnel.stages}
    assert cfg.benchmark.tasks and not seen & set(cfg.benchmark.tasks), (name, seen)
