"""MLflow set-up shared by the stages that write to it.

The tracking URI comes from config, else the environment, else the workspace's SQLite
store; experiments are created with their artifact root inside the workspace, so nothing
lands in ``./mlruns`` of whatever directory the user ran from.
"""

from __future__ import annotations

import os

from attestflow.workspace import Workspace


def tracking_uri(configured: str | None, ws: Workspace) -> str:
    """The MLflow tracking URI in force: config, then ``MLFLOW_TRACKING_URI``, then the workspace."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or ws.mlflow_uri


def client(uri: str):  # type: ignore[no-untyped-def]
    """An `MlflowClient` for `uri` (tracking and registry on the same store)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(uri: str, name: str, ws: Workspace) -> str:
    """The id of experiment `name`, created with its artifacts in the workspace if new."""
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = ws.mlflow_artifacts.as_uri() if uri.startswith("sqlite:") else None
    return str(c.create_experiment(name, artifact_location=location))
