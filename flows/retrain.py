"""Scheduled retraining: release again only when the data changed since the champion was trained.

The scheduled deployment runs this flow; it hashes the current data the way DVC does (using
DVC's stat cache, so an unchanged snapshot costs well under a second) and compares it with
the champion's ``data_md5`` tag. Unchanged data ends the run at once in a ``Skipped`` state;
changed data runs the full release flow as a subflow, gates and approval included. A registry
that cannot be asked fails the run: it is neither a first release nor unchanged data.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from attestflow.dvc import dvc_md5
from attestflow.environments import release_config
from attestflow.outcomes import ReleaseSummary
from attestflow.registry import ModelRef, Registry
from attestflow.tracking import tracking_uri
from attestflow.workspace import Workspace
from flows.release import release
from flows.stages import environment_tags, run_name


def champion_data_md5(model_name: str, alias: str, uri: str) -> str | None:
    """The DVC md5 of the data the current champion was trained on; None only if there is no champion.

    A registry that cannot be asked raises `RegistryUnavailableError`: taking it for "no
    champion" would release on every schedule, and for "unchanged" would never retrain.
    """
    champion = Registry(uri).version(ModelRef(model_name, None, alias))
    return champion.tags.get("data_md5") if champion is not None else None


@flow(name="retrain", log_prints=True, flow_run_name=run_name)
def retrain(
    config_path: str = "configs/release.yaml",
    overrides: list[str] | None = None,
    environment: str | None = None,
    environments_path: str = "configs/environments.yaml",
) -> ReleaseSummary | State[Any]:
    """Release from the current data unless it is the data the champion was trained on.

    With `environment` (the scheduled deployments name ``staging``), the champion asked and the
    release made are that environment's (`attestflow.environments`).
    """
    with environment_tags(environment):
        return _retrain(config_path, overrides, environment, environments_path)


def _retrain(
    config_path: str, overrides: list[str] | None, environment: str | None, environments_path: str
) -> ReleaseSummary | State[Any]:
    log = get_run_logger()
    cfg = release_config(config_path, overrides, environment, environments_path)
    ws = Workspace.at(cfg.workspace)
    current = dvc_md5(cfg.snapshot.repo, cfg.data.path)
    trained_on = champion_data_md5(
        cfg.model_name, cfg.promote.alias, tracking_uri(cfg.register.tracking_uri, ws)
    )
    if current == trained_on:
        message = f"data unchanged (DVC md5 {current}) since {cfg.model_name}@{cfg.promote.alias} was trained"
        log.info("skipping: %s", message)
        return Completed(name="Skipped", message=message)
    log.info("data changed (%s -> %s): releasing", trained_on, current)
    return release(
        config_path=config_path,
        overrides=overrides,
        environment=environment,
        environments_path=environments_path,
    )
