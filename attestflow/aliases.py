"""Every move of a serving alias goes through here: promotion, canary roll-back and `attestflow rollback`.

A version is downloaded and verified exactly as `attestflow verify` does before an alias may
point at it, its signed evidence included (a PASSED gate verdict about that ``model.onnx`` and
an approval of that bundle, not undone by the canary: `attestflow.evidence_check`); one that
fails any check is refused, and the refusal is audited. The version an
alias leaves is kept as the previous alias, ready for a rollback. Reading the current
version, moving the alias and writing the audit entry happen under the model's promotion lock
(`attestflow.promotion_lock`: the Prefect server's concurrency limit when workers share one, a
file lock in the embedded default), so two releases racing to promote, on one machine or on
several, leave one champion and a consistent log. Each move's
audit head is mirrored as a tag on the registered model, an anchor outside the log file. A
rollback refuses while an alias was moved outside attestflow (`attestflow.alias_drift`), and
undoing a promotion puts the previous alias back too, so that it never names the version
that was just refused. In an environment that takes versions promoted from another (`EnvTrust`),
each move verifies with that environment's trust: the source's keys for the bundle and its
``evidence/``, the environment's own key for what it signed under ``environments/<env>/``.
"""

from __future__ import annotations

from pathlib import Path

from attestflow.alias_drift import RESTORED, refuse_on_drift
from attestflow.audit import AUDIT_LOG_TAG, AuditLog, log_identity
from attestflow.errors import BadInputError, GateFailedError
from attestflow.evidence_check import REQUIREMENTS, EnvTrust
from attestflow.outcomes import PromotionRecord
from attestflow.registry import Registry
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
    trust: EnvTrust | None = None,
    **details: str | None,
) -> PromotionRecord:
    """Verify `version` and its evidence, point `alias` at it and `previous_alias` at the old one; audit it."""
    registry = Registry(tracking_uri)
    with audit.locked(model_name):
        uri = f"models:/{model_name}/{version}"
        result = verify_model_uri(uri, tracking_uri, public_key, require=REQUIREMENTS, trust=trust)
        if not result.ok:
            audit.append(f"{event}_refused", model=model_name, version=version, failures=result.failures)
            raise GateFailedError([f"{event} to {result.target} refused: {f}" for f in result.failures])
        previous = registry.alias_version(model_name, alias)
        registry.set_alias(model_name, alias, version)
        if previous is not None and previous != version:
            registry.set_alias(model_name, previous_alias, previous)
        entry = audit.append(
            event, model=model_name, version=version, alias=alias, previous=previous, **details
        )
        # Already champion (a re-run after a crash between this move and the canary): the model it
        # replaced, which the canary compares with and a rollback restores, is the one the first move
        # kept under `previous_alias`, not this version itself.
        replaced = registry.alias_version(model_name, previous_alias) if previous == version else previous
        head = audit.head() or {}
        registry.set_model_tag(model_name, AUDIT_LOG_TAG, log_identity(audit.store))
        registry.set_model_tag(model_name, "audit_head", f"{head.get('seq')}:{head.get('sha256')}")
        registry.set_version_tag(model_name, version, f"audit.{entry['seq']}", event)
    return PromotionRecord(model_name=model_name, alias=alias, version=version, previous_version=replaced)


def clear_alias(
    event: str, model_name: str, alias: str, *, tracking_uri: str, audit: AuditLog, reason: str
) -> None:
    """Remove `alias` (nothing to verify: no version will serve through it), and audit it."""
    with audit.locked(model_name):
        Registry(tracking_uri).delete_alias(model_name, alias)
        audit.append(event, model=model_name, version=None, alias=alias, reason=reason)


def restore_alias(
    model_name: str, alias: str, version: str | None, *, tracking_uri: str, audit: AuditLog, reason: str
) -> None:
    """Put `alias` back at `version` (None: remove it) if it points elsewhere, and audit it."""
    registry = Registry(tracking_uri)
    with audit.locked(model_name):
        if registry.alias_version(model_name, alias) == version:
            return
        if version is None:
            registry.delete_alias(model_name, alias)
        else:
            registry.set_alias(model_name, alias, version)
        audit.append(RESTORED, model=model_name, version=version, alias=alias, reason=reason)


def restore_previous(
    record: PromotionRecord,
    tracking_uri: str,
    public_key: Path,
    audit: AuditLog,
    previous_alias: str,
    reason: str,
    trust: EnvTrust | None = None,
) -> None:
    """Put the champion before `record` back, and `previous_alias`; clear the alias if there was none.

    A champion before it that no longer verifies with its evidence is not restored: the alias
    is cleared instead, so it never stays on the version the canary refused.
    """
    with audit.locked(record.model_name):
        if record.previous_version is None:
            clear_alias(
                "canary_rollback",
                record.model_name,
                record.alias,
                tracking_uri=tracking_uri,
                audit=audit,
                reason=reason,
            )
        else:
            try:
                move_alias(
                    "canary_rollback",
                    record.model_name,
                    record.previous_version,
                    alias=record.alias,
                    previous_alias=previous_alias,
                    tracking_uri=tracking_uri,
                    public_key=public_key,
                    audit=audit,
                    trust=trust,
                    reason=reason,
                )
            except GateFailedError as e:
                # The old champion lacks evidence now (e.g. released before it was required): serving
                # nothing is safer than leaving the alias on the version the canary just refused.
                clear_alias(
                    "canary_rollback",
                    record.model_name,
                    record.alias,
                    tracking_uri=tracking_uri,
                    audit=audit,
                    reason=f"{reason}; v{record.previous_version} cannot be restored ({e.reasons[0]}), "
                    f"so @{record.alias} is cleared",
                )
        restore_alias(
            record.model_name,
            previous_alias,
            record.previous_alias_version,
            tracking_uri=tracking_uri,
            audit=audit,
            reason=f"as before the undone promotion of v{record.version}",
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
    reason: str,
    trust: EnvTrust | None = None,
) -> PromotionRecord:
    """Point `alias` back at `to_version`, or at the `previous_alias` version, after verifying it.

    The target is resolved and compared with the current version under the promotion lock, so a
    concurrent move cannot change either in between; drift of the model's aliases refuses it.
    """
    if not reason.strip():
        raise BadInputError("--reason is required: say why, for the audit trail")
    registry = Registry(tracking_uri)
    with audit.locked(model_name):
        refuse_on_drift(
            "rollback", model_name, alias=alias, previous_alias=previous_alias, registry=registry, audit=audit
        )
        target = to_version or registry.alias_version(model_name, previous_alias)
        if target is None:
            raise BadInputError(
                f"{model_name} has no @{previous_alias} version to roll back to; name one with --to"
            )
        if target == registry.alias_version(model_name, alias):
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
            trust=trust,
            reason=reason,
        )
