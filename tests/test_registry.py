"""The registered optimizer: log, register with an alias, load as a Keras optimizer by text."""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

import pipeline
from pipeline import seeds
from pipeline.keras_optimizer import ProgramOptimizer
from pipeline.registry import (
    DEFAULT_ALIAS,
    DEFAULT_MODEL_NAME,
    MODEL_CODE,
    load_optimizer,
    load_program,
)
from pipeline.statement import ProgramError
from pipeline.tracking import Tracker

CHAMPION = f"models:/{DEFAULT_MODEL_NAME}@{DEFAULT_ALIAS}"


def _register_raw(store: str, tmp_path: Path, text: str, name: str, edit_mlmodel=None) -> None:
    """Register a model whose program artifact is arbitrary text (as a tampered registry would)."""
    client = MlflowClient(store, store)
    program_file = tmp_path / "program.txt"
    program_file.write_text(text)
    model_dir = tmp_path / "raw_model"
    mlflow.pyfunc.save_model(
        model_dir, python_model=str(MODEL_CODE), artifacts={"program": str(program_file)},
        pip_requirements=["mlflow"],
    )
    if edit_mlmodel:
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
        edit_mlmodel(mlmodel)
        (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    exp = client.create_experiment("raw", (tmp_path / "raw_artifacts").as_uri())
    run = client.create_run(exp)
    client.log_artifacts(run.info.run_id, str(model_dir), "optimizer")
    client.create_registered_model(name)
    mv = client.create_model_version(name, f"runs:/{run.info.run_id}/optimizer", run.info.run_id)
    client.set_registered_model_alias(name, "champion", mv.version)


def test_winner_is_registered_with_alias_champion_and_loads_back_as_the_same_program(store):
    tracker = Tracker("cfg")
    with tracker.run("discover"), tracker.child_run("register") as run_id:
        first = tracker.register(seeds.lion())
        second = tracker.register(seeds.signsgd())
    client = MlflowClient(store, store)
    assert (str(first.version), str(second.version)) == ("1", "2")
    champion = client.get_model_version_by_alias(DEFAULT_MODEL_NAME, DEFAULT_ALIAS)
    assert str(champion.version) == "2" and champion.run_id == run_id
    assert load_program(CHAMPION) == seeds.signsgd()  # the alias moved to the newest winner
    assert load_program(f"models:/{DEFAULT_MODEL_NAME}/1") == seeds.lion()
    assert load_program(f"models:/{DEFAULT_MODEL_NAME}/latest") == seeds.signsgd()
    assert load_program(f"runs:/{run_id}/optimizer") == seeds.lion()
    assert load_program(f"runs:/{run_id}/optimizer_2") == seeds.signsgd()
    files = {f.path for f in client.list_artifacts(run_id, "optimizer")}
    assert "optimizer/MLmodel" in files and "optimizer/program_model.py" in files
    assert not any(p.endswith(".pkl") for p in files)  # models from code: nothing pickled


def test_a_version_gets_its_model_card_and_a_rule_that_ignores_lr_loads_with_a_warning(store):
    fixed = pipeline.Program.parse("m = interp(g, m, 0.9)\nu = sign(m)\nupdate = u * 0.001\n")
    tracker = Tracker("cfg")
    with tracker.run("discover"), tracker.child_run("register"):
        tracker.register(fixed, description="the card", tags={"reads_lr": "False"},
                         model_description="found by lionforge")
    client = MlflowClient(store, store)
    version = client.get_model_version_by_alias(DEFAULT_MODEL_NAME, DEFAULT_ALIAS)
    assert version.description == "the card"
    assert version.tags == {"reads_lr": "False", "structural_hash": fixed.structural_hash()}
    assert client.get_registered_model(DEFAULT_MODEL_NAME).description == "found by lionforge"
    with pytest.warns(UserWarning, match="never reads lr"):
        load_optimizer(CHAMPION)
    with tracker.run("discover"), tracker.child_run("register"):
        tracker.register(seeds.lion())  # an empty model description leaves the model's alone
    assert client.get_registered_model(DEFAULT_MODEL_NAME).description == "found by lionforge"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_optimizer(CHAMPION)  # reads lr: no warning


def test_pyfunc_loader_gives_a_keras_optimizer_and_predicts_the_first_update(store):
    tracker = Tracker("cfg")
    with tracker.child_run("register"):
        tracker.register(seeds.lion(), name="pyfunc-test")
    model = mlflow.pyfunc.load_model("models:/pyfunc-test@champion")
    opt = model.unwrap_python_model().optimizer(learning_rate=0.01)
    assert isinstance(opt, ProgramOptimizer) and opt.program == seeds.lion()
    out = model.predict({"w": [1.0, 2.0, 3.0], "g": [0.5, -0.2, 0.0]}, params={"lr": 0.1})
    np.testing.assert_allclose(out["update"], [0.1, -0.1, 0.0])  # Lion from zero state


def test_load_optimizer_from_champion_trains_a_keras_model(store):
    import keras

    tracker = Tracker("cfg")
    with tracker.child_run("register"):
        tracker.register(seeds.adamw())
    opt = pipeline.load_optimizer(CHAMPION, learning_rate=0.05)  # the package-level name
    assert isinstance(opt, ProgramOptimizer) and opt.program == seeds.adamw()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], "float32"))[:, None]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=opt, loss="mse")
    losses = model.fit(x, y, epochs=5, batch_size=32, verbose=0).history["loss"]
    assert losses[-1] < 0.5 * losses[0]


def test_hostile_program_text_fails_to_load_with_program_error_and_never_runs(store, tmp_path):
    marker = tmp_path / "pwned"
    hostile = f"import os\nopen({str(marker)!r}, 'w').write('x')\nupdate = g * lr\n"
    _register_raw(store, tmp_path, hostile, "hostile")
    with pytest.raises(ProgramError):
        load_optimizer("models:/hostile@champion")
    assert not marker.exists()


def test_program_artifact_path_outside_the_model_is_refused(store, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("update = g * lr\n")

    def escape(mlmodel):
        mlmodel["flavors"]["python_function"]["artifacts"]["program"]["path"] = str(outside)

    _register_raw(store, tmp_path, "update = g * lr\n", "escaping", edit_mlmodel=escape)
    with pytest.raises(ProgramError, match="not a file"):
        load_program("models:/escaping@champion")
