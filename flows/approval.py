"""Human approval of a promotion, through Prefect's typed run input.

In ``human`` mode (or when the gate policy requires a person for a first release) the release
flow pauses with `Approval` as its input form, pre-filled with the bundle digest it is about
to promote; approvers decide in the Prefect UI, or with ``attestflow approve|reject RUN_ID``.
Each answer is checked by `attestflow.approval.check_answer` (digest, allow-list, no
self-approval, the approver's signature); a refused answer is audited, its outcome published
for the CLI (`attestflow.approval_channel`), and the flow keeps waiting. With
``approve.required`` above 1, approvals are counted (``approval_counted``) until that many
distinct approvers agreed; the same person approving twice is refused, and one rejection ends
it. When the policy's timeout runs out the release counts as rejected, audited with how many
approvals it had. This needs a Prefect server that both sides
reach (``PREFECT_API_URL``), not the temporary one a lone process starts.

How the flow waits is ``approve.wait``: ``pause`` keeps the process polling; ``suspend`` (for
costly infrastructure, such as a GPU pod) ends the process, freeing its worker or pod, and the
resumed run starts again from the top on a worker (`flows.stages.resumable` answers its stages
from their persisted results). Each wait has a key made from the bundle digest and the number
of the wait (`attestflow.approval_channel.pause_key`), so a resumed run gets the answers of its
earlier waits back in order; an answer already judged by an earlier execution is neither
audited nor published again. Prefect suspends only a deployment's top-level run: elsewhere
(``attestflow run``, a release inside the retraining flow) the flow pauses and says why.
"""

from __future__ import annotations

import time
from typing import Literal

from prefect.input import RunInput

from attestflow.approval import Answer, ApprovalRequest, Verdict, check_answer, utc_now
from attestflow.approval_channel import pause_key, publish_outcome, publish_request
from attestflow.audit import AuditLog
from attestflow.outcomes import ApprovalRecord
from attestflow.progress import run_logger
from attestflow.settings import ApproveConfig


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
    """Approve automatically (``auto``) or wait for people's decisions (``human``, or when `human`).

    A person's wait ends at the first rejection by an allowed approver, or once ``approve.required``
    distinct allowed approvers approved; a second approval by one of them is refused (and audited).
    """
    model, version, digest = request.model_name, request.version, request.digest
    if cfg.mode == "auto" and not human:
        record = ApprovalRecord(True, "policy:auto", "approve.mode is auto", digest, utc_now(), "auto")
        audit.append(
            "approval", model=model, version=version, actor="policy:auto", digest=digest, mode="auto"
        )
        return record
    publish_request(request)
    run_logger(__name__).info(
        "Waiting for %s: attestflow approve %s --digest %s --approver NAME --reason '...'",
        f"{cfg.required} approval(s)" if cfg.mode == "human" else "a person's approval",
        request.flow_run_id,
        digest,
    )
    deadline = time.monotonic() + cfg.timeout_s
    required = cfg.required if cfg.mode == "human" else 1  # a first release's person, in auto mode: one
    form = Approval.with_initial_data(
        description=_description(cfg, request, required), digest=digest, approver="", reason=""
    )
    wait = _how_to_wait(cfg.wait)
    counted: list[Verdict] = []  # the distinct approvers whose approval counts so far, in order
    attempt = -1
    while True:
        attempt += 1
        remaining = int(deadline - time.monotonic())
        if remaining <= 0:
            return _timed_out(cfg.timeout_s, required, request, audit, [v.approver for v in counted])
        key = pause_key(digest, attempt)
        answer = _wait_for_answer(form, remaining, key, wait)
        if answer is None:
            continue
        verdict = check_answer(cfg, request, answer)
        if verdict.refused is None and answer.approve and verdict.approver in {v.approver for v in counted}:
            verdict = Verdict(
                verdict.approver,
                f"{verdict.approver} already approved: {required} distinct approvers are required",
            )
        pending = required - len(counted) - 1 if verdict.refused is None and answer.approve else 0
        first_time = publish_outcome(key, answer.approve, verdict, pending)
        if verdict.refused is not None:
            if first_time:
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
        if answer.approve:
            counted.append(verdict)
        names = [v.approver for v in counted]
        event = "rejection" if not answer.approve else "approval" if pending <= 0 else "approval_counted"
        if first_time:
            audit.append(
                event,
                model=model,
                version=version,
                actor=verdict.approver,
                reason=answer.reason,
                digest=digest,
                mode="human",
                **({"approver_key_id": verdict.key_id} if verdict.key_id else {}),
                **({"approvers": names, "count": f"{len(names)} of {required}"} if required > 1 else {}),
            )
        if event == "approval_counted":
            continue
        return ApprovalRecord(
            answer.approve,
            verdict.approver,
            answer.reason,
            digest,
            utc_now(),
            "human",
            approver_key_id=verdict.key_id,
            approver_envelope=verdict.envelope,
            approvers=tuple(names),
            required=required,
        )


def _description(cfg: ApproveConfig, request: ApprovalRequest, required: int) -> str:
    """What the approval form says: which version, which bundle, how many approvals, why a person."""
    why = (
        "" if cfg.mode == "human" else "The gate policy requires a person's approval of a first release.\n\n"
    )
    needs = f"It needs **{required}** distinct approvers.\n\n" if required > 1 else ""
    return (
        f"Approve promotion of **{request.model_name}** version **{request.version}**.\n\n{why}{needs}"
        f"Bundle SHA-256: `{request.digest}`\n\nCheck the gates and lineage artifacts of this run first."
    )


def _timed_out(
    timeout_s: float, required: int, request: ApprovalRequest, audit: AuditLog, approvers: list[str]
) -> ApprovalRecord:
    """The wait ran out with too few approvals: a rejection, audited with how many there were."""
    count = f"{len(approvers)} of {required} approvals"
    audit.append(
        "rejection",
        model=request.model_name,
        version=request.version,
        actor="policy:timeout",
        digest=request.digest,
        why=count,
        **({"approvers": approvers} if approvers else {}),
    )
    reason = f"no decision within {timeout_s:.0f} s" if required == 1 else f"{count} within {timeout_s:.0f} s"
    return ApprovalRecord(
        False,
        "policy:timeout",
        reason,
        request.digest,
        utc_now(),
        "human",
        approvers=tuple(approvers),
        required=required,
    )


def _how_to_wait(configured: Literal["pause", "suspend"]) -> Literal["pause", "suspend"]:
    """``suspend`` where Prefect can suspend this run (a deployment's top-level run), else ``pause``."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx is not None else None
    # The server's own conditions: a subflow (a parent task run) or a run without a deployment is refused.
    if configured == "suspend" and (run is None or run.deployment_id is None or run.parent_task_run_id):
        run_logger(__name__).warning(
            "approve.wait is suspend, but Prefect suspends only a deployment's top-level run: pausing"
        )
        return "pause"
    return configured


def _wait_for_answer(
    form: type[Approval], timeout: int, key: str, wait: Literal["pause", "suspend"]
) -> Answer | None:
    """Pause (or suspend) under `key` until someone answers; None when the wait timed out."""
    from prefect.flow_runs import pause_flow_run, suspend_flow_run

    if wait == "suspend":
        # Ends this process unless `key` was answered before; a suspension that times out fails the run.
        got = suspend_flow_run(wait_for_input=form, timeout=timeout, key=key)
    else:
        try:
            got = pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=2, key=key)
        except Exception as e:  # Prefect raises on a pause that times out
            if "timeout" not in type(e).__name__.lower() and "timed out" not in str(e).lower():
                raise
            return None
    return Answer(got.approve, got.approver, got.reason, got.digest, got.signed)
