"""Commands that move the champion alias: `approve` and `reject` a paused release, `rollback`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from attestflow.errors import BadInputError, GateFailedError, UnavailableError
from flows.cli import render
from flows.cli.common import (
    ConfigOpt,
    EnvironmentsOpt,
    EnvOpt,
    audit_log,
    env_trust,
    registry_uri,
    workspace_of,
)

DigestOpt = Annotated[
    str, typer.Option(help="SHA-256 of the bundle you checked (12+ leading characters; all 64 with --key).")
]
ReasonOpt = Annotated[str, typer.Option(help="Why, for the audit trail.")]
ApproverOpt = Annotated[
    str | None, typer.Option(help="Who decides (default: $ATTESTFLOW_ACTOR or the OS user).")
]
KeyOpt = Annotated[
    Path | None,
    typer.Option("--key", help="Sign the decision with your PEM EC private key (see approve.approver_keys)."),
]
WaitOpt = Annotated[float, typer.Option("--wait", min=1, help="Seconds to wait for the flow's decision.")]


def decide(
    run_id: str,
    approve_it: bool,
    reason: str,
    digest: str,
    approver: str | None,
    key: Path | None,
    wait: float,
) -> None:
    """Answer a release paused for approval, then report whether the flow accepted the answer."""
    from dataclasses import replace
    from uuid import UUID

    from attestflow.approval import decision_word, sign_answer
    from attestflow.approval_channel import read_request, send_answer, wait_for_outcome
    from attestflow.keys import load_private_key
    from attestflow.lineage import actor

    try:
        flow_run_id = UUID(run_id)
    except ValueError:
        raise BadInputError(f"not a flow run id: {run_id!r}") from None
    if not reason.strip():
        raise BadInputError("--reason is required: say why, for the audit trail")
    who, word, signed = actor(approver), decision_word(approve_it), ""
    if key is not None:
        full = digest.strip().removeprefix("sha256:").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", full):
            raise BadInputError(
                "with --key, --digest must be the bundle's full SHA-256: the signature covers it"
            )
        private_key = load_private_key(key)
        request = replace(read_request(flow_run_id), digest=full)
        signed = sign_answer(request, approve_it, who, reason, private_key)
    answer = {"approve": approve_it, "approver": who, "reason": reason, "digest": digest, "signed": signed}
    outcome = wait_for_outcome(flow_run_id, send_answer(flow_run_id, answer), wait)
    if outcome is None:
        raise UnavailableError(f"flow run {run_id} did not decide on the answer within {wait:g} s")
    if not outcome["accepted"]:
        raise GateFailedError(
            [f"flow run {run_id} refused {who}'s answer: {outcome['refused']}; it keeps waiting"]
        )
    more = f"; it waits for {outcome['pending']} more approval(s)" if outcome.get("pending") else ""
    render.note(f"{word} flow run {run_id} for bundle {digest[:16]}... (accepted by the flow as {who}{more})")


def approve(
    run_id: str,
    digest: DigestOpt,
    reason: ReasonOpt,
    approver: ApproverOpt = None,
    key: KeyOpt = None,
    wait: WaitOpt = 120,
) -> None:
    """Approve the promotion a paused release flow is waiting on; exit 1 if the flow refuses it."""
    decide(run_id, True, reason, digest, approver, key, wait)


def reject(
    run_id: str,
    digest: DigestOpt,
    reason: ReasonOpt,
    approver: ApproverOpt = None,
    key: KeyOpt = None,
    wait: WaitOpt = 120,
) -> None:
    """Reject the promotion a paused release flow is waiting on; exit 1 if the flow refuses it."""
    decide(run_id, False, reason, digest, approver, key, wait)


def rollback(
    reason: ReasonOpt,
    to: Annotated[
        str | None, typer.Option("--to", help="Version to roll back to (default: @previous).")
    ] = None,
    config: ConfigOpt = None,
    model: Annotated[str | None, typer.Option(help="Registered model name (default: config's).")] = None,
    env: EnvOpt = None,
    environments: EnvironmentsOpt = None,
) -> None:
    """Point champion back at the previous (or a named) version, after verifying it."""
    from attestflow.aliases import rollback as roll_back
    from attestflow.keys import trusted_public_key

    cfg, ws = workspace_of(config, env, environments)
    moved = roll_back(
        model or cfg.model_name,
        to,
        alias=cfg.promote.alias,
        previous_alias=cfg.promote.previous_alias,
        tracking_uri=registry_uri(cfg, ws),
        public_key=trusted_public_key(cfg.sign.public_key, ws.root),
        audit=audit_log(cfg, ws),
        reason=reason,
        trust=env_trust(env, environments),
    )
    was = f"v{moved.previous_version}" if moved.previous_version else "unset"
    render.note(f"@{moved.alias} -> {moved.model_name} v{moved.version} (was {was})")
