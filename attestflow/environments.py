"""Named environments (dev, staging, prod): each its own registry, key, audit log and rules.

The seed documents name shared credentials between development, staging and production as an
anti-pattern. An environment here is a boundary enforced by keys and evidence: each has its
own signing key, registered model, DVC remote and audit log; production takes versions only
from the environment below it (`promote_from`), trusting that environment's public keys
(`trusts`) and never its own. `configs/environments.yaml` is the one definition.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from attestflow.config import ApproveConfig, CanaryConfig, KeySpec, _Model

ENV_NAME = r"^[a-z][a-z0-9_-]*$"


class EnvGates(_Model):
    """The gates an environment re-runs on a version promoted into it, on its own labelled data."""

    policy: Path
    data: Path
    """A DVC-tracked table of recent labelled data (same columns as the release data)."""


class MonitoringRequirement(_Model):
    """What "monitoring is on" means for a promotion into this environment."""

    deployment: str
    """The drift monitor's Prefect deployment, ``flow-name/deployment-name``."""
    automations: bool = True
    """Also require enabled notification automations on drift and on a canary roll-back."""


class Preconditions(_Model):
    """What must hold in an environment before a version may be promoted into it."""

    monitoring: MonitoringRequirement | None = None
    rollback_drill_days: float | None = Field(None, gt=0)
    """A rollback drill must have passed within this many days (unset: not required)."""
    min_staging_hours: float = Field(0.0, ge=0)
    """The version must have been approved in the source environment at least this long ago."""


class Environment(_Model):
    """One environment: where its versions live, who signs them, who approves, what it requires."""

    name: str = Field("", pattern=r"^$|" + ENV_NAME)
    """Filled in from the key under ``environments:``."""
    tracking_uri: str | None = None
    """MLflow tracking and registry URI; unset: the workspace's SQLite registry."""
    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    dvc_remote: str | None = None
    """``snapshot.remote_url`` of releases into this environment; unset: as the release config says."""
    audit: str | None = None
    """``audit.location`` of this environment (each environment its own log)."""
    key: KeySpec = KeySpec()
    approve: ApproveConfig = ApproveConfig()
    alias: str = Field("champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    promote_from: str | None = Field(None, pattern=ENV_NAME)
    """The environment whose versions `attestflow promote --to NAME` takes; unset: releases only."""
    trusts: list[Path] = Field(default_factory=list)
    """Public keys (PEM) accepted for the source environment's signatures and evidence."""
    gates: EnvGates | None = None
    canary: CanaryConfig | None = None
    preconditions: Preconditions = Preconditions()


class Environments(_Model):
    """The whole file: environment name -> environment."""

    environments: dict[str, Environment]
