"""Human approval of a promotion, through Prefect's typed run input.

In ``human`` mode (or when the gate policy requires a person for a first release) the release
flow pauses with `Approval` as its input form, pre-filled with the bundle digest it is about
to promote; approvers decide in the Prefect UI, or with ``attestflow approve|reject RUN_ID``.
Each answer is checked by `attestflow.approval.check_answer` (digest, allow-list, no
self-approval, the approver's signature); a refused answer is audited, its outcome published
for the CLI (`attestflow.approval_channel`), and the flow keeps waiting. When the policy's
timeout runs out the release counts as rejected. This needs a Prefect server that both sides
reach (``PREFECT_API_URL``), not the temporary one a lone process starts.
"""

from __future__ import annotations

import time
from uuid import uuid4

from prefect.input import RunInput

from attestflow.approval import Answer, ApprovalRequest, check_answer, utc_now
from attestflow.approval_channel import PAUSE_PREFIX, publish_outcome, publish_request
from attestflow.audit import AuditLog
from attestflow.config import ApproveConfig
from attestflow.outcomes import ApprovalRecord


class Approval(RunInput):
    """The approval form: approve or reject the bundle with this digest, and say why."""

    approve: bool = False
    approver: str = ""
    reason: str = ""
    digest: str = ""
    """SHA-256 of the release bundle being approved (a prefix of 12+ characters is enough)."""
    signed: str = ""
    """The approver's DSSE envelope (JSON) over the approval statement; required for approvers with a key."""


def approve(
    cfg: ApproveConfig, request: ApprovalRequest, audit: AuditLog, *, human: bool = False
) -> ApprovalRecord:
    """Approve automatically (``auto``) or wait for a person's decision (``human``, or when `human`)."""
    model, version, digest = request.model_name, request.version, request.digest
    if cfg.mode == "auto" and not human:
        record = ApprovalRecord(True, "policy:auto", "approve.mode is auto", digest, utc_now(), "auto")
        audit.append(
            "approval", model=model, version=version, actor="policy:auto", digest=digest, mode="auto"
        )
        return record
    publish_request(request)
    deadline = time.monotonic() + cfg.timeout_s
    why = (
        "" if cfg.mode == "human" else "The gate policy requires a person's approval of a first release.\n\n"
    )
    description = (
        f"Approve promotion of **{model}** version **{version}**.\n\n{why}"
        f"Bundle SHA-256: `{digest}`\n\nCheck the gates and lineage artifacts of this run first."
    )
    form = Approval.with_initial_data(description=description, digest=digest, approver="", reason="")
    while True:
        remaining = int(deadline - time.monotonic())
        if remaining <= 0:
            audit.append("rejection", model=model, version=version, actor="policy:timeout", digest=digest)
            return ApprovalRecord(
                False,
                "policy:timeout",
                f"no decision within {cfg.timeout_s:.0f} s",
                digest,
                utc_now(),
                "human",
            )
        answer, pause_key = _wait_for_answer(form, remaining)
        if answer is None:
            continue
        verdict = check_answer(cfg, request, answer)
        publish_outcome(pause_key, answer.approve, verdict)
        if verdict.refused is not None:
            audit.append(
                "approval_refused",
                model=model,
                version=version,
                actor=verdict.approver,
                why=verdict.refused,
                decision="approve" if answer.approve else "reject",
                given=answer.digest,
                digest=digest,
            )
            continue
        audit.append(
            "approval" if answer.approve else "rejection",
            model=model,
            version=version,
            actor=verdict.approver,
            reason=answer.reason,
            digest=digest,
            mode="human",
            **({"approver_key_id": verdict.key_id} if verdict.key_id else {}),
        )
        return ApprovalRecord(
            answer.approve,
            verdict.approver,
            answer.reason,
            digest,
            utc_now(),
            "human",
            approver_key_id=verdict.key_id,
            approver_envelope=verdict.envelope,
        )


def _wait_for_answer(form: type[Approval], timeout: int) -> tuple[Answer | None, str]:
    """Pause under a fresh key until someone answers; None when the pause timed out."""
    from prefect.flow_runs import pause_flow_run

    pause_key = f"{PAUSE_PREFIX}{uuid4().hex[:12]}"
    try:
        got = pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=2, key=pause_key)
    except Exception as e:  # Prefect raises on a pause that times out
        if "timeout" not in type(e).__name__.lower() and "timed out" not in str(e).lower():
            raise
        return None, pause_key
    return Answer(got.approve, got.approver, got.reason, got.digest, got.signed), pause_key
