"""Stage `promote`: point the serving alias (``champion``) at a gated version, after verifying it.

The version is downloaded from the registry and verified exactly as `attestflow verify`
does (files, signatures, provenance, tags, data snapshot) with the trusted public key; a
version that fails any check cannot become champion.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from attestflow.errors import GateFailedError
from attestflow.records import PromotionRecord
from attestflow.tracking import client
from attestflow.verify import verify_model_uri


def current_alias_version(model_name: str, alias: str, tracking_uri: str) -> str | None:
    """The version `alias` points at, or None when it is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client(tracking_uri).get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def promote(
    model_name: str, version: str, alias: str, tracking_uri: str, public_key: Path
) -> PromotionRecord:
    """Verify `version`, then move `alias` to it, remembering where it pointed before."""
    result = verify_model_uri(f"models:/{model_name}/{version}", tracking_uri, public_key)
    if not result.ok:
        raise GateFailedError([f"promotion of {result.target} refused: {f}" for f in result.failures])
    previous = current_alias_version(model_name, alias, tracking_uri)
    client(tracking_uri).set_registered_model_alias(model_name, alias, version)
    return PromotionRecord(model_name=model_name, alias=alias, version=version, previous_version=previous)


promote_task = task(name="promote")(promote)
