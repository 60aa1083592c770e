"""Stage `promote`: point the serving alias (``champion``) at a version that passed its gates."""

from __future__ import annotations

from prefect import task

from attestflow.records import PromotionRecord
from attestflow.tracking import client


def current_alias_version(model_name: str, alias: str, tracking_uri: str) -> str | None:
    """The version `alias` points at, or None when it is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client(tracking_uri).get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def promote(model_name: str, version: str, alias: str, tracking_uri: str) -> PromotionRecord:
    """Move `alias` to `version`, remembering where it pointed before."""
    previous = current_alias_version(model_name, alias, tracking_uri)
    client(tracking_uri).set_registered_model_alias(model_name, alias, version)
    return PromotionRecord(model_name=model_name, alias=alias, version=version, previous_version=previous)


promote_task = task(name="promote")(promote)
