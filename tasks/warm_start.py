"""Stage `warm_start`: the current champion's fine-tuned weights, when retraining should start from them.

A scheduled retraining continues from what is serving rather than from the base model.
The champion is verified first (signature, provenance, registry tags, and its signed gate
verdict and approval, as for any alias move); its training checkpoint is fetched from the
training run named in the signed provenance and must have the SHA-256 that provenance
records, so a swapped checkpoint cannot slip into training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task

from attestflow.bundle import PROVENANCE
from attestflow.digests import Digest, file_digest
from attestflow.dsse import dsse_verify
from attestflow.errors import GateFailedError
from attestflow.evidence_check import REQUIREMENTS
from attestflow.keys import load_public_key
from attestflow.provenance import byproduct
from attestflow.records import WarmStart
from attestflow.registry import Registry
from attestflow.tracking import client
from attestflow.training.checkpoints import CHECKPOINT_ARTIFACT
from attestflow.verify import verify_model_uri
from attestflow.workspace import Workspace


def _byproduct(statement: dict[str, Any], name: str) -> dict[str, Any]:
    item = byproduct(statement, name)
    if item is None:
        raise GateFailedError([f"the champion's provenance names no {name!r}; cannot warm-start from it"])
    return item


def champion_weights(
    model_name: str, alias: str, tracking_uri: str, public_key: Path, ws: Workspace
) -> WarmStart | None:
    """The verified training checkpoint of the version `alias` points at; None when the alias is unset."""
    version = Registry(tracking_uri).alias_version(model_name, alias)
    if version is None:
        return None
    uri = f"models:/{model_name}/{version}"
    statements: list[dict[str, Any]] = []

    def read_provenance(folder: Path) -> None:
        envelope = json.loads((folder / PROVENANCE).read_text())
        statements.append(dsse_verify(envelope, load_public_key(public_key)))

    checked = verify_model_uri(uri, tracking_uri, public_key, use=read_provenance, require=REQUIREMENTS)
    if not checked.ok:
        raise GateFailedError([f"warm start: {uri} failed verification: {f}" for f in checked.failures])
    statement = statements[0]
    run_id = _byproduct(statement, "mlflow_run")["uri"].removeprefix("runs:/")
    sha256 = _byproduct(statement, "checkpoint")["digest"]["sha256"]
    dest = ws.training / "warm-start" / f"{sha256[:20]}.safetensors"
    if not (dest.is_file() and file_digest(dest).value == sha256):
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            local = Path(
                client(tracking_uri).download_artifacts(run_id, CHECKPOINT_ARTIFACT, str(dest.parent))
            )
        except Exception as e:  # MLflow raises several types for a missing artifact
            raise GateFailedError(
                [f"warm start: {uri}'s training checkpoint is not in run {run_id}: {str(e).splitlines()[0]}"]
            ) from None
        local.replace(dest)
    got = file_digest(dest).value
    if got != sha256:
        dest.unlink()
        raise GateFailedError(
            [f"warm start: {uri}'s training checkpoint has SHA-256 {got[:12]}, provenance says {sha256[:12]}"]
        )
    return WarmStart(uri, dest, Digest("sha256", sha256, "file bytes"))


warm_start_task = task(name="warm_start")(champion_weights)
