"""The MLflow "models from code" file for a registered optimizer program.

MLflow copies this file into the logged model and runs it when someone calls
``mlflow.pyfunc.load_model``; it only names the model class. The program itself is the
model's ``program`` text artifact, parsed by :meth:`Program.parse` in ``load_context``.
"""

import mlflow

from pipeline.registry import ProgramModel

mlflow.models.set_model(ProgramModel())
