"""Human approval of a promotion, through Prefect's typed run input.

In ``human`` mode the release flow pauses with `Approval` as its input form, pre-filled with
the bundle digest it is about to promote; MLOps approve or reject in the Prefect UI, or with
``attestflow approve|reject RUN_ID``. An approval is accepted only for that exact digest; one
for another digest is refused and the flow keeps waiting; when the policy's timeout runs out
the release counts as rejected. This needs a Prefect server that both sides reach
(``PREFECT_API_URL``), not the temporary one a lone process starts.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from prefect.input import RunInput

from attestflow.audit import AuditLog
from attestflow.config import ApproveConfig
from attestflow.lineage import actor
from attestflow.records import ApprovalRecord

MIN_DIGEST_PREFIX = 12


class Approval(RunInput):
    """The approval form: approve or reject the bundle with this digest, and say why."""

    approve: bool = False
    approver: str = ""
    reason: str = ""
    digest: str = ""
    """SHA-256 of the release bundle being approved (a prefix of 12+ characters is enough)."""


def digest_matches(given: str, expected: str) -> bool:
    """Whether an approver's digest names `expected` (whole, or a long enough prefix)."""
    given = given.strip().removeprefix("sha256:").lower()
    return len(given) >= MIN_DIGEST_PREFIX and expected.startswith(given)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def approve(
    cfg: ApproveConfig, model_name: str, version: str, digest: str, audit: AuditLog
) -> ApprovalRecord:
    """Approve automatically (``auto``) or wait for a person's decision on `digest` (``human``)."""
    from prefect.flow_runs import pause_flow_run

    if cfg.mode == "auto":
        record = ApprovalRecord(True, "policy:auto", "approve.mode is auto", digest, _now(), "auto")
        audit.append(
            "approval", model=model_name, version=version, actor="policy:auto", digest=digest, mode="auto"
        )
        return record
    deadline = time.monotonic() + cfg.timeout_s
    description = (
        f"Approve promotion of **{model_name}** version **{version}**.\n\n"
        f"Bundle SHA-256: `{digest}`\n\nCheck the gates and lineage artifacts of this run first."
    )
    form = Approval.with_initial_data(description=description, digest=digest, approver="", reason="")
    while True:
        remaining = int(deadline - time.monotonic())
        if remaining <= 0:
            audit.append(
                "rejection", model=model_name, version=version, actor="policy:timeout", digest=digest
            )
            return ApprovalRecord(
                False, "policy:timeout", f"no decision within {cfg.timeout_s:.0f} s", digest, _now(), "human"
            )
        try:
            answer = pause_flow_run(wait_for_input=form, timeout=remaining, poll_interval=2)
        except Exception as e:  # Prefect raises on a pause that times out
            if "timeout" not in type(e).__name__.lower() and "timed out" not in str(e).lower():
                raise
            continue
        who = actor(answer.approver.strip() or "unknown")
        if not digest_matches(answer.digest, digest):
            audit.append(
                "approval_refused",
                model=model_name,
                version=version,
                actor=who,
                given=answer.digest,
                digest=digest,
            )
            continue
        event = "approval" if answer.approve else "rejection"
        audit.append(
            event,
            model=model_name,
            version=version,
            actor=who,
            reason=answer.reason,
            digest=digest,
            mode="human",
        )
        return ApprovalRecord(answer.approve, who, answer.reason, digest, _now(), "human")
