"""Options that several commands share, and the config and registry look-ups behind them.

Only typer, the standard library and `attestflow.errors` (which imports nothing) are imported
here at module level: the modules that define commands are imported for `--help`, and config
loading brings pydantic along.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from attestflow.errors import BadInputError
from attestflow.errors import first_line as first_line  # re-exported for the commands

if TYPE_CHECKING:
    from attestflow.audit import AuditLog
    from attestflow.config import ReleaseConfig
    from attestflow.evidence_check import EnvTrust
    from attestflow.workspace import Workspace

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Release config YAML.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: stage.key=value.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--env", help="Environment of the environments file: its model, registry, key and audit log."
    ),
]
EnvironmentsOpt = Annotated[
    Path | None,
    typer.Option("--environments", help="Environments file (default: configs/environments.yaml)."),
]


def config_of(
    path: Path | None,
    overrides: list[str] | None = None,
    env: str | None = None,
    environments: Path | None = None,
) -> ReleaseConfig:
    """The release config at `path` (default: ``$ATTESTFLOW_CONFIG`` or ``configs/release.yaml``),
    applied to the environment `env` of the file `environments` when one is named."""
    from attestflow.config import default_config_path
    from attestflow.environments import release_config

    if env is None and environments is not None:
        raise BadInputError("--environments names the file of --env's environment: give --env too")
    return release_config(path or default_config_path(), overrides, env, environments)


def workspace_of(
    config: Path | None, env: str | None = None, environments: Path | None = None
) -> tuple[ReleaseConfig, Workspace]:
    """The release config (in environment `env`, when named) and the workspace it names."""
    from attestflow.workspace import Workspace

    cfg = config_of(config, None, env, environments)
    return cfg, Workspace.at(cfg.workspace)


def env_trust(env: str | None, environments: Path | None = None) -> EnvTrust | None:
    """The keys that verify versions promoted into `env` (its own and its source's); None without `promote_from`."""
    from attestflow.environments import trust_in

    return trust_in(env, environments)


def registry_uri(cfg: ReleaseConfig, ws: Workspace) -> str:
    """The MLflow tracking URI of the model registry that `cfg` names."""
    from attestflow.tracking import tracking_uri

    return tracking_uri(cfg.register.tracking_uri, ws)


def audit_log(cfg: ReleaseConfig, ws: Workspace) -> AuditLog:
    """The audit log `cfg` names, its head signed and checked with the configured (or workspace) key."""
    from attestflow.audit import AuditLog

    return AuditLog.configured(cfg, ws.root)
