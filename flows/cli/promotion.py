"""Commands that move the champion alias: `approve` and `reject` a paused release, `rollback`."""

from __future__ import annotations

from typing import Annotated

import typer

from attestflow.errors import BadInputError, UnavailableError
from flows.cli import render
from flows.cli.common import ConfigOpt, first_line, registry_uri, workspace_of

DigestOpt = Annotated[str, typer.Option(help="SHA-256 of the bundle you checked (12+ leading characters).")]
ReasonOpt = Annotated[str, typer.Option(help="Why, for the audit trail.")]
ApproverOpt = Annotated[
    str | None, typer.Option(help="Who decides (default: $ATTESTFLOW_ACTOR or the OS user).")
]


def decide(run_id: str, approve_it: bool, reason: str, digest: str, approver: str | None) -> None:
    """Resume a paused release flow run with an approval or a rejection of the bundle `digest`."""
    from uuid import UUID

    from attestflow.audit import actor

    try:
        flow_run_id = UUID(run_id)
    except ValueError:
        raise BadInputError(f"not a flow run id: {run_id!r}") from None
    if not reason.strip():
        raise BadInputError("--reason is required: say why, for the audit trail")
    import httpx
    from prefect.flow_runs import resume_flow_run

    decision = {"approve": approve_it, "approver": approver or actor(), "reason": reason, "digest": digest}
    try:
        resume_flow_run(flow_run_id, run_input=decision)
    except (httpx.TransportError, OSError) as e:
        raise UnavailableError(f"the Prefect API did not answer: {first_line(e)}") from e
    except Exception as e:  # the Prefect client raises several types for unknown or unpaused runs
        raise BadInputError(
            f"cannot resume flow run {run_id}: {str(e).splitlines()[0]} (is PREFECT_API_URL set to the server?)"
        ) from None
    render.note(f"{'approved' if approve_it else 'rejected'} flow run {run_id} for bundle {digest[:16]}...")


def approve(run_id: str, digest: DigestOpt, reason: ReasonOpt, approver: ApproverOpt = None) -> None:
    """Approve the promotion a paused release flow is waiting on."""
    decide(run_id, True, reason, digest, approver)


def reject(run_id: str, digest: DigestOpt, reason: ReasonOpt, approver: ApproverOpt = None) -> None:
    """Reject the promotion a paused release flow is waiting on."""
    decide(run_id, False, reason, digest, approver)


def rollback(
    to: Annotated[
        str | None, typer.Option("--to", help="Version to roll back to (default: @previous).")
    ] = None,
    config: ConfigOpt = None,
    model: Annotated[str | None, typer.Option(help="Registered model name (default: config's).")] = None,
) -> None:
    """Point champion back at the previous (or a named) version, after verifying it."""
    from attestflow.aliases import rollback as roll_back
    from attestflow.audit import AuditLog
    from attestflow.keys import trusted_public_key

    cfg, ws = workspace_of(config)
    moved = roll_back(
        model or cfg.model_name,
        to,
        alias=cfg.promote.alias,
        previous_alias=cfg.promote.previous_alias,
        tracking_uri=registry_uri(cfg, ws),
        public_key=trusted_public_key(cfg.sign.public_key, ws.root),
        audit=AuditLog.of(ws.root),
    )
    was = f"v{moved.previous_version}" if moved.previous_version else "unset"
    render.note(f"@{moved.alias} -> {moved.model_name} v{moved.version} (was {was})")
