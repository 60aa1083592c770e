"""The flow `env-promote`: a verified version of one environment becomes the champion of the next.

Each step is audited in the TARGET environment's log and refuses with its reasons
(``env_promotion_refused``, exit 1): 1. the version is verified in its source environment with
a key the target trusts (signature, provenance, PASSED gate verdict, approval); 2. the
target's preconditions hold; 3. the target's gates, re-run on its own labelled data against
its own champion (`flows.evaluate`), pass; 4. the target's approvers approve the source
bundle; 5. the version is copied into the target's model (`tasks.copy_version`); 6. the
bundle (`tasks.sign_environment`), the promotion statement naming that signature, the
target's gate verdict and approval are signed with the target's key under
``environments/<env>/``; 7. the alias moves with the canary in one transaction
(`flows.promotion.move_with_canary`), rolled back when the canary says no. This module only
composes; what it composes is `attestflow.env_promotion`.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from attestflow.approval import ApprovalRequest
from attestflow.bundle import MODEL
from attestflow.env_promotion import (
    EnvPromotionSummary,
    Promotion,
    approved_at,
    open_promotion,
    promotion_statement,
    signature_of,
    verify_source,
)
from attestflow.errors import GateFailedError
from attestflow.evidence import approval_statement, verification_summary
from attestflow.evidence_check import environment_dir
from attestflow.preconditions import check_preconditions
from attestflow.registry import parse_model_uri
from flows.approval import approve
from flows.artifacts import publish_checks
from flows.evaluate import evaluate
from flows.evidence import attest_evidence
from flows.promotion import Placement, move_with_canary
from flows.stages import Invoke, stage
from tasks.copy_version import copy_version_task
from tasks.gates.registry import training_checkpoint
from tasks.gates.report import publish_gates_task
from tasks.sign_environment import sign_environment_task


def run_env_promotion(p: Promotion, invoke: Invoke) -> EnvPromotionSummary:
    """Steps 1-7 in order; raises `GateFailedError` (already audited) at the first that says no."""
    ctx, src, cfg = p.ctx, p.source, p.ctx.cfg
    started = time.perf_counter()

    def audit(event: str, version: str | None = None, **details: object) -> None:
        ctx.audit.append(
            event, model=cfg.model_name, version=version, actor=ctx.actor, source=src.label, **details
        )

    def refuse(step: str, reasons: list[str]) -> GateFailedError:
        audit("env_promotion_refused", step=step, reasons=reasons, flow_run_id=ctx.flow_run_id)
        return GateFailedError([f"{step}: {r}" for r in reasons], audited=True)

    audit("env_promotion_started", flow_run_id=ctx.flow_run_id, reason=p.reason, to=p.env.name)
    verified, key, tags = verify_source(p)
    publish_checks(cfg.model_name, f"source {src.label} verified with {p.env.name}'s trust", verified.checks)
    audit("source_verified", passed=verified.ok, key=str(key), failures=verified.failures)
    if not verified.ok or key is None:
        raise refuse("verify", verified.failures)
    signed = signature_of(p.folder, key, tags)

    pre = check_preconditions(
        p.env, tracking_uri=ctx.tracking_uri, audit=ctx.audit, source_version_time=approved_at(p.folder, key)
    )
    for c in pre:
        audit("precondition", check=c.name, passed=c.ok, detail=c.detail)
    publish_checks(cfg.model_name, f"preconditions of {p.env.name}", pre)
    if any(not c.ok for c in pre):
        raise refuse("preconditions", [f"{c.name}: {c.detail}" for c in pre if not c.ok])

    checkpoint = training_checkpoint(parse_model_uri(src.uri), src.tracking_uri, ctx.ws)
    gates = evaluate(str(p.folder / MODEL), cfg, ctx.policy, checkpoint, trust=p.trust)
    ctx.record(gates)
    if not gates.passed:
        raise refuse("gates", gates.failures())

    request = ApprovalRequest(
        cfg.model_name, src.label, signed.bundle_digest.value, ctx.flow_run_id, ctx.actor
    )
    approval = approve(cfg.approve, request, ctx.audit, human=gates.human_approval)
    if not approval.approved:
        raise refuse("approval", [f"not approved by {approval.approver}: {approval.reason}"])

    copied = invoke(copy_version_task, cfg.register)(
        src,
        p.folder,
        model_name=cfg.model_name,
        tracking_uri=ctx.tracking_uri,
        experiment=cfg.register.experiment,
        ws=ctx.ws,
        flow_run_id=ctx.flow_run_id,
    )
    ctx.record(copied)
    registered, under = copied.registered, environment_dir(p.env.name)

    model_signature = invoke(sign_environment_task, cfg.sign)(
        p.folder,
        registered,
        environment=p.env.name,
        key=ctx.key,
        workspace_root=ctx.ws.root,
        out_dir=ctx.release_dir,
    )
    ctx.record(model_signature)
    promoted = promotion_statement(
        src,
        p.env.name,
        p.folder,
        signed,
        registered,
        list(approval.approvers or (approval.approver,)),
        signature=model_signature.local_path,
        reason=p.reason,
    )
    attest_evidence(ctx, invoke, promoted, registered, attach=model_signature.local_path, under=under)
    gates_json = invoke(publish_gates_task, cfg.gates)(
        gates, registered, out_dir=ctx.release_dir, tracking_uri=ctx.tracking_uri
    )
    verdict = verification_summary(
        gates, registered, signed, gates_json, policy_uri=str(cfg.gates.policy), under=under
    )
    attest_evidence(ctx, invoke, verdict, registered, attach=gates_json, under=under)
    attest_evidence(
        ctx, invoke, approval_statement(approval, registered, ctx.invocation), registered, under=under
    )

    outcome = move_with_canary(ctx, invoke, registered, signed, approval, [], Placement(under, p.trust))
    if not outcome.released:
        raise refuse("promotion", outcome.failures)
    seconds = time.perf_counter() - started
    audit(
        "env_promotion_completed", registered.version, flow_run_id=ctx.flow_run_id, seconds=round(seconds, 1)
    )
    return EnvPromotionSummary(
        src.label, p.env.name, registered.model_name, registered.version, outcome, seconds
    )


def _label_run(p: Promotion) -> None:
    """Name the Prefect run after both environments and tag it with them."""
    from prefect.client.orchestration import get_client

    if not flow_run.id:
        return
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.id)
        client.update_flow_run(flow_run.id, name=p.run_name, tags=sorted({*run.tags, *p.tags}))


@flow(name="env-promote", log_prints=True)
def env_promote(
    model_uri: str,
    to: str,
    environments: str = "configs/environments.yaml",
    config_path: str = "configs/release.yaml",
    reason: str = "",
) -> EnvPromotionSummary:
    """Promote `model_uri` (a version of `to`'s source environment) into environment `to`."""
    p = open_promotion(
        model_uri,
        to,
        environments=Path(environments),
        config_path=Path(config_path),
        flow_run_id=str(flow_run.id or "local"),
        reason=reason,
    )
    _label_run(p)
    return run_env_promotion(p, stage)
