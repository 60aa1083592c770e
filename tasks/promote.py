"""Stage `promote` (and `attestflow rollback`): move the serving alias, only to a verified version.

The version is downloaded from the registry and verified exactly as `attestflow verify`
does; one that fails any check cannot become champion. The champion it replaces is kept as
the ``previous`` alias, ready for a rollback. Reading the current champion, moving the alias
and writing the audit entry happen under the workspace's audit lock, so two releases racing
to promote leave one champion and a consistent log. Each move's audit head is mirrored as
tags on the registered model, an anchor outside the log file.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.transactions import get_transaction

from attestflow.audit import AuditLog
from attestflow.errors import BadInputError, GateFailedError
from attestflow.records import PromotionRecord
from attestflow.tracking import alias_version, client
from attestflow.verify import verify_model_uri


def move_alias(
    event: str,
    model_name: str,
    version: str,
    *,
    alias: str,
    previous_alias: str,
    tracking_uri: str,
    public_key: Path,
    audit: AuditLog,
    **details: str | None,
) -> PromotionRecord:
    """Verify `version`, point `alias` at it and `previous_alias` at the old one, and audit it."""
    c = client(tracking_uri)
    with audit.locked():
        result = verify_model_uri(f"models:/{model_name}/{version}", tracking_uri, public_key)
        if not result.ok:
            audit.append(f"{event}_refused", model=model_name, version=version, failures=result.failures)
            raise GateFailedError([f"{event} to {result.target} refused: {f}" for f in result.failures])
        previous = alias_version(model_name, alias, tracking_uri)
        c.set_registered_model_alias(model_name, alias, version)
        if previous is not None and previous != version:
            c.set_registered_model_alias(model_name, previous_alias, previous)
        entry = audit.append(
            event, model=model_name, version=version, alias=alias, previous=previous, **details
        )
        head = audit.head() or {}
        c.set_registered_model_tag(model_name, "audit_head", f"{head.get('seq')}:{head.get('sha256')}")
        c.set_model_version_tag(model_name, version, f"audit.{entry['seq']}", event)
    return PromotionRecord(model_name=model_name, alias=alias, version=version, previous_version=previous)


def promote(
    model_name: str,
    version: str,
    alias: str,
    previous_alias: str,
    tracking_uri: str,
    public_key: Path,
    audit: AuditLog,
    flow_run_id: str,
) -> PromotionRecord:
    """Promote a gated and approved version; inside a transaction, a later failure undoes it."""
    record = move_alias(
        "promotion",
        model_name,
        version,
        alias=alias,
        previous_alias=previous_alias,
        tracking_uri=tracking_uri,
        public_key=public_key,
        audit=audit,
        flow_run_id=flow_run_id,
    )
    txn = get_transaction()
    if txn is not None:
        txn.set("promotion", record)
        txn.set("undo", (tracking_uri, str(public_key), str(audit.path), previous_alias))
    return record


def restore_previous(
    record: PromotionRecord,
    tracking_uri: str,
    public_key: Path,
    audit: AuditLog,
    previous_alias: str,
    reason: str,
) -> None:
    """Put the champion before `record` back (or clear the alias if there was none)."""
    c = client(tracking_uri)
    if record.previous_version is None:
        with audit.locked():
            c.delete_registered_model_alias(record.model_name, record.alias)
            audit.append(
                "canary_rollback", model=record.model_name, version=None, alias=record.alias, reason=reason
            )
        return
    move_alias(
        "canary_rollback",
        record.model_name,
        record.previous_version,
        alias=record.alias,
        previous_alias=previous_alias,
        tracking_uri=tracking_uri,
        public_key=public_key,
        audit=audit,
        reason=reason,
    )


def rollback(
    model_name: str,
    to_version: str | None,
    *,
    alias: str,
    previous_alias: str,
    tracking_uri: str,
    public_key: Path,
    audit: AuditLog,
) -> PromotionRecord:
    """Point `alias` back at `to_version`, or at the `previous_alias` version, after verifying it."""
    target = to_version or alias_version(model_name, previous_alias, tracking_uri)
    if target is None:
        raise BadInputError(
            f"{model_name} has no @{previous_alias} version to roll back to; name one with --to"
        )
    if target == alias_version(model_name, alias, tracking_uri):
        raise BadInputError(f"{model_name} version {target} is already @{alias}")
    return move_alias(
        "rollback",
        model_name,
        target,
        alias=alias,
        previous_alias=previous_alias,
        tracking_uri=tracking_uri,
        public_key=public_key,
        audit=audit,
    )


promote_task = task(name="promote")(promote)


@promote_task.on_rollback
def _undo_promotion(txn: object) -> None:
    record: PromotionRecord = txn.get("promotion")  # type: ignore[attr-defined]
    uri, key, audit_path, previous_alias = txn.get("undo")  # type: ignore[attr-defined]
    reason = txn.get("rollback_reason", "a later step of the promotion failed")  # type: ignore[attr-defined]
    restore_previous(record, uri, Path(key), AuditLog(Path(audit_path)), previous_alias, reason)
