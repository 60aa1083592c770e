"""The `rollback-drill` flow: verify the way back and rehearse it on a drill alias, on a schedule.

Production's promotion precondition asks for a drill that passed within N days
(`attestflow.preconditions`); the deployment ``rollback-drill/weekly`` (prefect.yaml) keeps
one fresh, and ``attestflow rollback-drill --env prod`` runs it by hand. The drill itself is
`attestflow.rollback_drill.run_drill`; this flow resolves the environment, publishes what it
found as an artifact and fails the run when the drill failed.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from attestflow.artifacts import artifact_key
from attestflow.audit import AuditLog
from attestflow.config import ReleaseConfig, load_config
from attestflow.errors import GateFailedError
from attestflow.evidence_check import EnvTrust
from attestflow.keys import trusted_public_key
from attestflow.rollback_drill import DrillRecord, run_drill
from attestflow.tracking import tracking_uri
from attestflow.workspace import Workspace

ENVIRONMENTS = "configs/environments.yaml"


def drill_config(
    environment: str | None, environments_path: str, config_path: str, overrides: list[str] | None
) -> ReleaseConfig:
    """The release config with `environment` applied (None: the config as it is)."""
    if environment is None:
        return load_config(Path(config_path), overrides)
    from attestflow.environments import release_config

    return release_config(config_path, overrides, environment, environments_path)


def drill_trust(environment: str | None, environments_path: str) -> EnvTrust | None:
    """The keys that verify the versions promoted into `environment` (None: a release's own key alone)."""
    if environment is None:
        return None
    from attestflow.environments import environment_trust, load_environments

    return environment_trust(load_environments(Path(environments_path)), environment)


def _markdown(record: DrillRecord) -> str:
    verdict = "passed" if record.passed else "**failed**: " + "; ".join(record.failures)
    steps = "\n".join(f"| {step} | {seconds:.3f} |" for step, seconds in record.timings.items())
    return (
        f"# Rollback drill of {record.model_name}: {verdict}\n\n"
        f"Champion v{record.champion}, previous {f'v{record.previous}' if record.previous else 'unset'}; "
        f"verified {', '.join(f'v{v}' for v in record.versions) or 'nothing'} in {record.seconds:.1f} s.\n\n"
        f"| step | seconds |\n|---|---|\n{steps}\n"
    )


@flow(name="rollback-drill", flow_run_name="rollback-drill {environment}", log_prints=True)
def rollback_drill(
    environment: str | None = "prod",
    environments_path: str = ENVIRONMENTS,
    config_path: str = "configs/release.yaml",
    overrides: list[str] | None = None,
) -> DrillRecord:
    """Verify `previous` and the last approved versions, move the drill alias there and back; audit it."""
    cfg = drill_config(environment, environments_path, config_path, overrides)
    ws = Workspace.at(cfg.workspace)
    record = run_drill(
        cfg.model_name,
        alias=cfg.promote.alias,
        previous_alias=cfg.promote.previous_alias,
        tracking_uri=tracking_uri(cfg.register.tracking_uri, ws),
        public_key=trusted_public_key(cfg.sign.public_key, ws.root),
        audit=AuditLog.configured(cfg, ws.root),
        trust=drill_trust(environment, environments_path),
    )
    create_markdown_artifact(
        _markdown(record), key=artifact_key(cfg.model_name, "rollback-drill"), description="rollback drill"
    )
    if not record.passed:
        raise GateFailedError([f"rollback drill of {cfg.model_name}: {f}" for f in record.failures])
    return record
