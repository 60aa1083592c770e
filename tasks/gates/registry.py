"""Models the gates fetch from the MLflow registry: the champion baseline and evaluated versions.

"No champion yet" and "the registry could not be asked" must not look alike: only MLflow's
own not-found answers mean a first release (`attestflow.registry` decides which is which); a
registry that failed becomes a baseline problem, so the regression gate fails instead of
passing as if nothing were there to compare with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attestflow.adapters import Inputs
from attestflow.bundle import ATTRIBUTIONS, MODEL
from attestflow.errors import BadInputError, RegistryUnavailableError
from attestflow.evidence_check import EnvTrust
from attestflow.explain import read_attributions
from attestflow.registry import ModelRef, Registry
from attestflow.verify import verify_model_uri
from attestflow.workspace import Workspace
from tasks.gates.evaluation import Baseline, ModelRun, run_model


def champion(
    model_name: str,
    alias: str,
    tracking_uri: str,
    inputs: Inputs,
    provider: str,
    public_key: Path | None,
    trust: EnvTrust | None = None,
) -> Baseline:
    """The model `alias` points at, verified and run on `inputs`; a baseline that cannot be trusted or run says why.

    `trust`: the champion was promoted from another environment (`attestflow.verify.verify_model_uri`).
    """
    try:
        version = Registry(tracking_uri).alias_version(model_name, alias)
    except RegistryUnavailableError as e:  # a broken registry must not look like a first release
        return Baseline(alias, f"models:/{model_name}@{alias}", problem=str(e))
    if version is None:
        return Baseline(alias, None)
    uri = f"models:/{model_name}/{version}"
    if public_key is None:
        return Baseline(alias, uri, problem="no trusted public key to verify the champion with")
    runs: list[ModelRun] = []
    attributions: list[dict[str, Any] | None] = []

    def use(folder: Path) -> None:
        runs.append(run_model(folder / MODEL, provider, inputs))
        attributions.append(read_attributions(folder / ATTRIBUTIONS))

    try:
        checked = verify_model_uri(uri, tracking_uri, public_key, use=use, trust=trust)
    except (BadInputError, RegistryUnavailableError) as e:
        return Baseline(alias, uri, problem=str(e))
    if not checked.ok:
        return Baseline(alias, uri, problem=f"the champion failed verification: {checked.failures[0]}")
    return Baseline(alias, uri, logits=runs[0].logits, problem=runs[0].problem, attributions=attributions[0])


def training_checkpoint(ref: ModelRef, tracking_uri: str, ws: Workspace) -> Path | None:
    """The torch checkpoint a registered version was exported from, if it is still in the workspace."""
    registry = Registry(tracking_uri)
    version = registry.version(ref)
    run = registry.run(version.run_id) if version is not None and version.run_id else None
    key = run.params.get("training_key") if run is not None else None
    path = ws.training / key / "model.safetensors" if key else None
    return path if path is not None and path.is_file() else None
