"""The promotion protocol: approval, then promotion and canary as one transaction.

A version that passed every gate is approved (automatically or by a person, per
`approve.mode`), moved to the serving alias after verification, and scored against the
champion it replaced. The approval (either way) and the canary's verdict are signed and added
to the version's evidence, which the alias move requires. The alias move and the canary share
one Prefect transaction: when the canary says no, its FAILED verdict is signed first, then the
promotion's rollback hook puts the previous champion back. What happened
comes back as one `PromotionOutcome`; nothing here raises for a refusal.

The transaction (`move_with_canary`) is also the last step of a promotion between
environments (`flows.env_promote`), run with the target environment's context and a
`Placement`: its statements go under ``environments/<env>/`` and the version is verified
with that environment's trust instead of the release key.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect.transactions import Transaction, transaction

from attestflow.approval import ApprovalRequest
from attestflow.context import ReleaseContext
from attestflow.errors import GateFailedError
from attestflow.evidence import EVIDENCE_DIR, approval_statement, canary_statement
from attestflow.evidence_check import EnvTrust
from attestflow.outcomes import ApprovalRecord, CanaryRecord, PromotionOutcome, PromotionRecord
from attestflow.records import AuditEvent, GateReport, RegistrationRecord, SignatureRecord
from flows.approval import approve
from flows.evidence import attest_evidence
from flows.stages import Invoke
from tasks.canary import canary_task
from tasks.promote import promote_task


@dataclass(frozen=True)
class Placement:
    """Where a promotion's signed statements go, and what the version is verified with."""

    under: str = EVIDENCE_DIR
    """The folder of the version's artifacts its statements are added to."""
    trust: EnvTrust | None = None
    """Set for a version promoted from another environment (every alias move verifies with it)."""


def promote_release(
    ctx: ReleaseContext,
    invoke: Invoke,
    registered: RegistrationRecord,
    signed: SignatureRecord,
    gates: GateReport,
) -> PromotionOutcome:
    """Approve, promote and canary a gated version; a canary that says no rolls the promotion back."""
    cfg, version = ctx.cfg, registered.version
    failures = gates.failures()
    approval = None
    if not failures:
        # A reused version's bundle is the one registered first: approve what will be promoted.
        request = ApprovalRequest(
            cfg.model_name, version, registered.bundle_sha256, ctx.flow_run_id, ctx.actor
        )
        approval = approve(cfg.approve, request, ctx.audit, human=gates.human_approval)
        if not approval.approved:
            failures.append(f"promotion not approved by {approval.approver}: {approval.reason}")
        attest_evidence(ctx, invoke, approval_statement(approval, registered, ctx.invocation), registered)
    return move_with_canary(ctx, invoke, registered, signed, approval, failures)


def move_with_canary(
    ctx: ReleaseContext,
    invoke: Invoke,
    registered: RegistrationRecord,
    signed: SignatureRecord,
    approval: ApprovalRecord | None,
    failures: list[str],
    placement: Placement = Placement(),
) -> PromotionOutcome:
    """Unless `failures` already says no, move the alias and run the canary in one transaction."""
    cfg, version = ctx.cfg, registered.version
    promotion = canaried = None
    if not failures:
        try:
            with transaction() as txn:
                promotion = invoke(promote_task, cfg.promote)(
                    cfg.model_name,
                    version,
                    cfg.promote.alias,
                    cfg.promote.previous_alias,
                    ctx.tracking_uri,
                    ctx.public_key,
                    ctx.audit,
                    ctx.flow_run_id,
                    trust=placement.trust,
                )
                canaried = _canary(ctx, invoke, promotion, txn, registered, signed, placement)
        except GateFailedError as e:
            failures += e.reasons
    if not failures:
        return PromotionOutcome(version, approval, promotion, canaried, [])
    if promotion is not None:
        failures.append(f"{cfg.promote.alias} rolled back to v{promotion.previous_version or ' (unset)'}")
    else:
        failures.append(f"{cfg.promote.alias} not moved")
    return PromotionOutcome(version, approval, None, None, failures, rolled_back=promotion is not None)


def _canary(
    ctx: ReleaseContext,
    invoke: Invoke,
    promotion: PromotionRecord,
    txn: Transaction,
    registered: RegistrationRecord,
    signed: SignatureRecord,
    placement: Placement,
) -> CanaryRecord:
    """Run the canary on the new champion and sign its verdict; when it says no, audit it and say why."""
    cfg = ctx.cfg

    def verdict(passed: bool, reasons: list[str]) -> None:
        stmt = canary_statement(
            registered,
            signed,
            passed=passed,
            reasons=reasons,
            previous=promotion.previous_version,
            sample=cfg.canary.sample,
        )
        attest_evidence(ctx, invoke, stmt, registered, under=placement.under)

    try:
        canaried = invoke(canary_task, cfg.canary)(
            cfg.canary,
            promotion,
            data=cfg.data,
            tracking_uri=ctx.tracking_uri,
            public_key=ctx.public_key,
            model=cfg.model,
            regression=ctx.policy.regression,
            trust=placement.trust,
        )
    except GateFailedError as e:
        txn.set("rollback_reason", "; ".join(e.reasons))
        ctx.record(AuditEvent("canary", {"passed": False, "reason": e.reasons}, promotion.version))
        verdict(False, e.reasons)
        raise
    ctx.record(canaried)
    verdict(True, [canaried.reason])
    return canaried
