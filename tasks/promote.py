"""Stage `promote`: point the serving alias at the gated and approved version, undone on a later failure.

The move itself (verification, the previous alias, the audit entry and its registry anchor)
is `attestflow.aliases.move_alias`, the one place every alias move goes through. Here it runs
inside the release's Prefect transaction: if a later step (the canary) fails, the
transaction's rollback hook puts the champion before it back, and the previous alias as it
was before the promotion (not at the version just refused). A promotion refuses while an
alias of the model was moved outside attestflow.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefect import task
from prefect.transactions import get_transaction

from attestflow.alias_drift import refuse_on_drift
from attestflow.aliases import move_alias, restore_previous
from attestflow.audit import AuditLog
from attestflow.evidence_check import EnvTrust
from attestflow.outcomes import PromotionRecord
from attestflow.registry import Registry


def promote(
    model_name: str,
    version: str,
    alias: str,
    previous_alias: str,
    tracking_uri: str,
    public_key: Path,
    audit: AuditLog,
    flow_run_id: str,
    trust: EnvTrust | None = None,
) -> PromotionRecord:
    """Promote a gated and approved version; inside a transaction, a later failure undoes it.

    `trust`: the version was promoted from another environment (`attestflow.aliases`).
    """
    registry = Registry(tracking_uri)
    with audit.locked(model_name):
        refuse_on_drift(
            "promotion",
            model_name,
            alias=alias,
            previous_alias=previous_alias,
            registry=registry,
            audit=audit,
        )
        before = registry.alias_version(model_name, previous_alias)
        moved = move_alias(
            "promotion",
            model_name,
            version,
            alias=alias,
            previous_alias=previous_alias,
            tracking_uri=tracking_uri,
            public_key=public_key,
            audit=audit,
            trust=trust,
            flow_run_id=flow_run_id,
        )
    record = replace(moved, previous_alias_version=before)
    txn = get_transaction()
    if txn is not None:
        txn.set("promotion", record)
        txn.set("undo", (tracking_uri, str(public_key), audit, previous_alias, trust))
    return record


promote_task = task(name="promote")(promote)


@promote_task.on_rollback
def _undo_promotion(txn: object) -> None:
    record: PromotionRecord = txn.get("promotion")  # type: ignore[attr-defined]
    uri, key, audit, previous_alias, trust = txn.get("undo")  # type: ignore[attr-defined]
    reason = txn.get("rollback_reason", "a later step of the promotion failed")  # type: ignore[attr-defined]
    restore_previous(record, uri, Path(key), audit, previous_alias, reason, trust)
