"""MLflow set-up shared by the stages that write to it.

The tracking URI comes from config, else the environment, else the workspace's SQLite
store; experiments are created with their artifact root inside the workspace, so nothing
lands in ``./mlruns`` of whatever directory the user ran from.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
from contextlib import contextmanager

from attestflow.workspace import Workspace


def tracking_uri(configured: str | None, ws: Workspace) -> str:
    """The MLflow tracking URI in force: config, then ``MLFLOW_TRACKING_URI``, then the workspace."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or ws.mlflow_uri


def client(uri: str) -> MlflowClient:
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


@contextmanager
def fluent_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (``mlflow.start_run``, ``log_model``) at `uri`, then put it back.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment, which
    would silently redirect every later release in the same process; this undoes that.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    saved: tuple[Any, Any] = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved[0])
        mlflow.set_registry_uri(saved[1])
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def log_bundle(uri: str, run_id: str, folder: Path) -> str:
    """Upload `folder` as the artifacts of a new logged model of run `run_id`; returns its model id."""
    import mlflow
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    with fluent_uri(uri), mlflow.start_run(run_id=run_id):
        logged = mlflow.initialize_logged_model(name="model", source_run_id=run_id)
        client(uri).log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        client(uri).log_model_artifacts(logged.model_id, str(folder))
        mlflow.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return str(logged.model_id)
