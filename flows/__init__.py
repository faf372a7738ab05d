"""Prefect flows over the pipeline, and the ``lionforge`` CLI.

Importing this package turns Prefect's and MLflow's usage telemetry off unless the user set
them: a search runs for days on machines that should send nothing anywhere unasked.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
