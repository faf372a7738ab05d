"""The lionforge command: help, errors people can act on, show/export, evolve that resumes."""

from __future__ import annotations

import json
import os
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
    assert capsys.readouterr().out == seeds.lion().to_text()
    (tmp_path / "summary.json").write_text(json.dumps({"best_program": seeds.adamw().to_text()}))
    assert main(["show", str(tmp_path)]) == 0
    assert Program.parse(capsys.readouterr().out) == seeds.adamw()


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


def _lionforge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}",
           "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _records(run_dir: Path) -> list[dict]:
    """The candidate records the run dir's checkpoint covers."""
    count = json.loads((run_dir / "search.json").read_text())["records"]
    lines = (run_dir / "search.records.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[:count]]


@pytest.mark.slow
def test_evolve_writes_a_summary_and_resumes_from_its_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    first = _lionforge("evolve", "--gin_file", SMOKE, "--run_dir", str(run_dir),
                       "--budget", "16", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"best_program", "best_fitness", "candidates_evaluated"} <= set(summary)
    assert summary["candidates_evaluated"] == 16
    Program.parse(summary["best_program"])
    before = _records(run_dir)
    # Not a terminal: plain progress lines, no carriage-return bar.
    assert "evolve: 16/16 candidates" in first.stderr and "\r[" not in first.stderr

    again = _lionforge("evolve", "--gin_file", SMOKE, "--run_dir", str(run_dir),
                       "--budget", "32", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    after = _records(run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["candidates_evaluated"] == 32
    assert after[:16] == before  # resumed: the first 16 candidates were not redone
    assert [r["index"] for r in after] == list(range(32))

    # The same run dir with another search setting is refused, naming it; nothing changes.
    files = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    other = _lionforge("evolve", "--gin_file", SMOKE, "--run_dir", str(run_dir), "--budget",
                       "48", "--gin_param", "EvolutionConfig.population_size = 8",
                       "--gin_param", "Experiment.seed = 3", cwd=tmp_path)
    assert other.returncode == 2
    err = other.stderr.strip().splitlines()
    assert len(err) == 1 and "EvolutionConfig.population_size (16 there, 8 now)" in err[0]
    assert "Experiment.seed" in err[0] and "Traceback" not in other.stderr
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == files
    # A run dir from before settings were recorded is refused too: its config is unknown.
    (run_dir / "settings.json").unlink()
    old = _lionforge("evolve", "--gin_file", SMOKE, "--run_dir", str(run_dir), "--budget",
                     "48", cwd=tmp_path)
    assert old.returncode == 2 and "recorded no settings" in old.stderr


def test_the_default_run_dir_is_per_experiment(tmp_path, monkeypatch):
    from flows import config
    from flows.stages import open_run_dir

    monkeypatch.chdir(tmp_path)
    parsed = build_parser().parse_args(["discover", "--gin_file", SMOKE])
    assert parsed.run_dir is None  # main() makes it runs/NAME once gin is parsed
    config.parse([SMOKE], [])
    exp, cfg = config.configured("Experiment"), config.configured("EvolveSettings")
    open_run_dir(cfg, exp, tmp_path / "runs" / exp.name)  # new: records its settings
    assert json.loads((tmp_path / "runs" / "smoke" / "settings.json").read_text())[
        "Proxy.tasks"] == ["teacher"]
