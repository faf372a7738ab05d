"""The discovered optimizer in the MLflow model registry.

A winner is logged as a pyfunc model from code (``pipeline/program_model.py``) whose only
artifact is the program *text*; it is registered (default name ``lionforge-discovered``) and
given an alias (default ``champion``). Loading never unpickles or imports anything stored with
the model: :func:`load_program` reads the text artifact and parses it with
:meth:`Program.parse`, so hostile text fails with :class:`ProgramError`.

Example::

    opt = load_optimizer("models:/lionforge-discovered@champion", learning_rate=3e-4)
    model.compile(optimizer=opt, loss="mse")
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from pipeline.execute import numpy_step
from pipeline.program import IGNORES_LR, Program
from pipeline.statement import ProgramError
from pipeline.tracking_server import default_tracking_uri

if TYPE_CHECKING:  # imported where used: reading a model's program needs no TensorFlow
    from pipeline.keras_optimizer import ProgramOptimizer

__all__ = [
    "DEFAULT_ALIAS",
    "DEFAULT_MODEL_NAME",
    "MODEL_CODE",
    "ProgramModel",
    "load_optimizer",
    "load_program",
    "log_program_model",
]

DEFAULT_MODEL_NAME = "lionforge-discovered"
DEFAULT_ALIAS = "champion"
MODEL_CODE = Path(__file__).with_name("program_model.py")
PROGRAM_ARTIFACT = "program"  # the key of the text artifact in the pyfunc flavor
_MAX_PROGRAM_BYTES = 1 << 20


def _read_program(path: Path) -> Program:
    if path.stat().st_size > _MAX_PROGRAM_BYTES:
        raise ProgramError(f"program artifact {path.name} is over {_MAX_PROGRAM_BYTES} bytes")
    return Program.parse(path.read_text(encoding="utf-8"))


class ProgramModel(mlflow.pyfunc.PythonModel):
    """A pyfunc around an optimizer program.

    After ``mlflow.pyfunc.load_model(uri)``, ``.unwrap_python_model().optimizer(lr)`` gives
    a Keras optimizer; ``predict`` gives the program's first update from zero state for a
    DataFrame with columns ``w`` and ``g`` (params ``lr``, default 1e-3, and ``t``, default 1).
    """

    program: Program | None = None

    def load_context(self, context) -> None:
        self.program = _read_program(Path(context.artifacts[PROGRAM_ARTIFACT]))

    def optimizer(self, learning_rate=0.001, **kwargs) -> ProgramOptimizer:
        """A fresh :class:`ProgramOptimizer` running this program."""
        from pipeline.keras_optimizer import ProgramOptimizer

        return ProgramOptimizer(self.program, learning_rate=learning_rate, **kwargs)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        params = params or {}
        w = np.asarray(model_input["w"], np.float32)
        g = np.asarray(model_input["g"], np.float32)
        update, _ = numpy_step(
            self.program, w, g, {}, float(params.get("lr", 1e-3)), float(params.get("t", 1))
        )
        return pd.DataFrame({"update": np.asarray(update, np.float64)})


_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("double", "w"), ColSpec("double", "g")]),
    outputs=Schema([ColSpec("double", "update")]),
    params=ParamSchema([ParamSpec("lr", "double", 1e-3), ParamSpec("t", "double", 1.0)]),
)


def log_program_model(
    program: Program,
    *,
    run_id: str,
    client: MlflowClient,
    name: str = DEFAULT_MODEL_NAME,
    alias: str | None = DEFAULT_ALIAS,
    artifact_path: str | None = None,
    description: str = "",
    tags: Mapping[str, str] | None = None,
    model_description: str = "",
) -> ModelVersion:
    """Log ``program`` as a pyfunc model under run ``run_id``, register it, set ``alias``.

    ``artifact_path`` defaults to ``optimizer`` (``optimizer_2``, ... when the run already has
    one). The version gets ``description`` (default: the program's text) and ``tags`` beside
    ``structural_hash``; a non-empty ``model_description`` becomes the registered model's.
    Returns the new ``ModelVersion``.
    """
    if not isinstance(program, Program):
        raise TypeError(
            f"Argument `program` must be a lionforge Program. Received: {type(program).__name__}"
        )
    if artifact_path is None:
        taken = {f.path for f in client.list_artifacts(run_id)}
        artifact_path = next(
            p for k in range(1, len(taken) + 2) if (p := "optimizer" + (f"_{k}" if k > 1 else ""))
            not in taken
        )
    with tempfile.TemporaryDirectory() as tmp:
        text_file = Path(tmp) / "program.txt"
        text_file.write_text(program.to_text(), encoding="utf-8")
        model_dir = Path(tmp) / "model"
        with warnings.catch_warnings():
            # The signature is given explicitly; MLflow's advice to add an input example for
            # inferring one does not apply.
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            _save_model(model_dir, program, text_file)
        client.log_artifacts(run_id, str(model_dir), artifact_path)
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    if model_description:
        client.update_registered_model(name, description=model_description)
    version = client.create_model_version(
        name,
        f"runs:/{run_id}/{artifact_path}",
        run_id=run_id,
        tags={**(tags or {}), "structural_hash": program.structural_hash()},
        description=description or program.to_text(),
    )
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return version


def _save_model(model_dir: Path, program: Program, text_file: Path) -> None:
    mlflow.pyfunc.save_model(
        model_dir,
        python_model=str(MODEL_CODE),
        artifacts={PROGRAM_ARTIFACT: str(text_file)},
        pip_requirements=_requirements(),
        metadata={"program": program.to_text(), "structural_hash": program.structural_hash()},
        signature=_SIGNATURE,
    )


def _requirements() -> list[str]:
    import keras

    # The loader also needs lionforge itself (this package) importable.
    return [f"mlflow=={mlflow.__version__}", f"keras=={keras.__version__}", "tensorflow", "numpy"]


def _artifact_uri(model_uri: str, client: MlflowClient) -> str:
    """Where a ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` model's files are.

    Resolved with ``client`` because MLflow's own ``models:/`` download ignores a registry
    URI passed to it and uses the global one.
    """
    if not model_uri.startswith("models:/"):
        return model_uri
    rest = model_uri.removeprefix("models:/").rstrip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        version = client.get_model_version_by_alias(name, alias).version
    else:
        name, _, version = rest.rpartition("/")
        if version == "latest":
            found = client.search_model_versions(f"name = '{name}'")
            version = str(max((int(v.version) for v in found), default=0))
    return client.get_model_version_download_uri(name, version)


def load_program(model_uri: str, *, tracking_uri: str | None = None) -> Program:
    """The program of a logged or registered model, e.g. ``models:/NAME@ALIAS``.

    Downloads the model's files, reads the text artifact named in its ``MLmodel`` (which must
    lie inside the model) and parses it; nothing stored with the model is imported or run.

    Raises:
        ProgramError: the stored text is not a valid program (or is missing).
    """
    uri = tracking_uri or default_tracking_uri()
    source = _artifact_uri(model_uri, MlflowClient(tracking_uri=uri, registry_uri=uri))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=uri)
        ).resolve()
        mlmodel = yaml.safe_load((root / "MLmodel").read_text(encoding="utf-8")) or {}
        flavor = mlmodel.get("flavors", {}).get("python_function", {})
        entry = (flavor.get("artifacts") or {}).get(PROGRAM_ARTIFACT) or {}
        rel = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(rel, str):
            raise ProgramError(f"model {model_uri} has no '{PROGRAM_ARTIFACT}' text artifact")
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise ProgramError(f"model {model_uri}: program artifact path {rel!r} is not a file")
        return _read_program(path)


def load_optimizer(
    model_uri: str, learning_rate=0.001, *, tracking_uri: str | None = None, **kwargs
) -> ProgramOptimizer:
    """A :class:`ProgramOptimizer` running the program of ``model_uri``, ready to compile.

    Keyword arguments go to the optimizer (``clipnorm``, ``use_ema``, ...). A rule that never
    reads ``lr`` loads with a ``UserWarning``: ``learning_rate`` would do nothing.
    """
    from pipeline.keras_optimizer import ProgramOptimizer

    program = load_program(model_uri, tracking_uri=tracking_uri)
    if not program.reads_lr:
        warnings.warn(f"{model_uri}: {IGNORES_LR}", UserWarning, stacklevel=2)
    return ProgramOptimizer(program, learning_rate=learning_rate, **kwargs)
