"""Models the gates fetch from the MLflow registry: the champion baseline and evaluated versions.

"No champion yet" and "the registry could not be asked" must not look alike: only MLflow's
own not-found answers mean a first release; any other error becomes a baseline problem, so
the regression gate fails instead of passing as if nothing were there to compare with.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attestflow.errors import BadInputError
from attestflow.tracking import client, fluent_uri
from attestflow.workspace import Workspace
from tasks.gates.evaluation import Baseline, run_model

_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z][\w-]*))$")


@dataclass(frozen=True)
class ModelRef:
    """A registered model version, by number or by alias."""

    name: str
    version: str | None
    alias: str | None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        """Parse ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``; anything else is bad input."""
        m = _MODEL_URI.match(uri)
        if m is None:
            raise BadInputError(f"{uri!r} is not a models:/NAME/VERSION or models:/NAME@ALIAS URI")
        return cls(m["name"], m["version"], m["alias"])


def alias_version(model_name: str, alias: str, tracking_uri: str) -> str | None:
    """The version `alias` points at; None only when MLflow says the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client(tracking_uri).get_model_version_by_alias(model_name, alias).version)
    except MlflowException as e:
        if e.error_code in _NOT_FOUND:
            return None
        raise


def download_onnx(model_uri: str, tracking_uri: str, dest: Path) -> Path:
    """Download a registered model's files into `dest` and return its ONNX file."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        with fluent_uri(tracking_uri):
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dest)))
    except MlflowException as e:
        raise BadInputError(f"cannot fetch {model_uri}: {str(e).splitlines()[0]}") from None
    found = sorted(local.rglob("*.onnx")) if local.is_dir() else [local]
    if not found or found[0].suffix != ".onnx":
        raise BadInputError(f"{model_uri} has no .onnx file")
    return found[0]


def champion(model_name: str, alias: str, tracking_uri: str, x: np.ndarray, provider: str) -> Baseline:
    """The model `alias` points at, run on `x`; a baseline that cannot be run says why."""
    try:
        version = alias_version(model_name, alias, tracking_uri)
    except Exception as e:  # an unreachable or broken registry must not look like a first release
        return Baseline(
            alias, f"models:/{model_name}@{alias}", problem=f"the registry failed: {str(e).splitlines()[0]}"
        )
    if version is None:
        return Baseline(alias, None)
    uri = f"models:/{model_name}/{version}"
    with tempfile.TemporaryDirectory(prefix="attestflow-baseline-") as tmp:
        try:
            path = download_onnx(uri, tracking_uri, Path(tmp))
        except BadInputError as e:
            return Baseline(alias, uri, problem=str(e))
        run = run_model(path, provider, x)
    return Baseline(alias, uri, logits=run.logits, problem=run.problem)


def training_checkpoint(ref: ModelRef, tracking_uri: str, ws: Workspace) -> Path | None:
    """The torch checkpoint a registered version was exported from, if it is still in the workspace."""
    from mlflow.exceptions import MlflowException

    c = client(tracking_uri)
    try:
        if ref.alias is not None:
            version = c.get_model_version_by_alias(ref.name, ref.alias)
        else:
            version = c.get_model_version(ref.name, str(ref.version))
        key = c.get_run(version.run_id).data.params.get("training_key") if version.run_id else None
    except MlflowException:
        return None
    path = ws.training / key / "model.safetensors" if key else None
    return path if path is not None and path.is_file() else None
