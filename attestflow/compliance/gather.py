"""What a compliance report may rely on: a model version verified now, and what its verified folder holds.

Nothing here checks a signature, a digest or a verdict itself: the version is resolved and
verified by `attestflow.verify.verify_model_uri` (the checks of `attestflow verify`, with an
environment's trust under ``--env``), its evidence folder is read by
`attestflow.evidence_read.read_evidence` and judged by `attestflow.evidence_check.verify_release`,
and the audit log is checked by `attestflow.audit.AuditLog.verify`. Only a folder that passed
is read, while it is still the verified download: a version that fails verification, or whose
evidence folder holds a file that does not verify, gives no report at all (`ReportRefusedError`);
see `gather`. Human text (the model card sections, the gate policy) is read from the repository.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestflow.bundle import ATTESTATION, MODEL, PROVENANCE, SIGNATURE, signature_manifest
from attestflow.digests import file_digest
from attestflow.dsse import dsse_verify
from attestflow.errors import GateFailedError
from attestflow.evidence_check import (
    APPROVED,
    GATES,
    PROVENANCE_CHECKS,
    EnvTrust,
    built_model_name,
    environment_dir,
    verify_release,
)
from attestflow.evidence_read import PROMOTED_CHECK_OF, Statement, evidence_files, read_evidence
from attestflow.keys import load_public_key
from attestflow.verify import Check, Verification

if TYPE_CHECKING:
    from attestflow.audit import AuditLog

CONFIG = f"{ATTESTATION}/config.json"


class ReportRefusedError(GateFailedError):
    """The version did not verify: no report is rendered for it (exit 1, the failed checks named)."""


@dataclass(frozen=True)
class Collected:
    """What a verified model folder holds, read while it was the verified download."""

    signed: dict[str, str]
    """Relative path -> SHA-256 of every file the verified model signature covers."""
    provenance: dict[str, Any]
    """The provenance statement, its signature verified with the trusted key."""
    config: dict[str, Any]
    """The signed release config (``attestation/config.json``); empty if the bundle has none."""
    statements: tuple[Statement, ...]
    """Every statement of the evidence folders whose signature verified (the environment's too)."""
    evidence: dict[str, str]
    """Relative path -> SHA-256 of every file under ``evidence/``."""
    checks: tuple[Check, ...]
    """`verify_release`'s gate verdict and approval checks on the folder."""
    json_files: dict[str, Any] = field(default_factory=dict)
    """The signed JSON attestations the report reads (attributions, AIBOM), parsed."""
    signature_digest: str = ""
    """SHA-256 of the model signature file itself."""

    @property
    def onnx(self) -> str:
        return self.signed.get(MODEL, "")


@dataclass(frozen=True)
class AuditFacts:
    """The audit log, checked, and its entries about this version."""

    ok: bool
    detail: str
    location: str
    entries: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Declared:
    """Text people wrote in the repository: the model card's sections and the gate policy."""

    card_path: str
    card_digest: str | None
    """SHA-256 of the model card file; None when there is none."""
    sections: dict[str, str]
    policy_path: str
    policy_digest: str
    """The gate policy's digest as a signed verdict records it (canonical JSON)."""
    policy_file_digest: str
    policy_runs: tuple[str, ...]


@dataclass(frozen=True)
class Gathered:
    """Everything a report on one model version is made from."""

    target: str
    model: str
    version: str | None
    verification: Verification
    folder: Collected
    declared: Declared
    audit: AuditFacts | None
    generated: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


READ_JSON = (f"{ATTESTATION}/attributions.json", f"{ATTESTATION}/aibom.cdx.json")


def declared_sections(path: Path) -> dict[str, str]:
    """The written sections of the model card text at `path` (section -> text); none when there is no file.

    Read through the model card's own strict loader (`attestflow.model_card`): a malformed file is
    one ``ConfigError`` line here as in a release.
    """
    from attestflow.model_card import card_text

    written = card_text(path).model_dump()
    return {name: text for name, value in written.items() if (text := _text(value))}


def _text(value: Any) -> str:
    """A section's value as one line of text: lists joined with ``; ``, mappings as ``key: value``."""
    if isinstance(value, list):
        return "; ".join(_text(v) for v in value if _text(v))
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items() if _text(v))
    return str(value).strip() if value is not None else ""


def declared(card: Path, policy: Path) -> Declared:
    """The repository's model card text and gate policy, with their digests."""
    from attestflow.policy import load_policy

    loaded = load_policy(policy)
    return Declared(
        card_path=str(card),
        card_digest=file_digest(card).value if card.is_file() else None,
        sections=declared_sections(card),
        policy_path=str(policy),
        policy_digest=loaded.digest().value,
        policy_file_digest=file_digest(policy).value,
        policy_runs=tuple(loaded.run),
    )


def _evidence_key(folder: Path, public_key: Path, trust: EnvTrust | None) -> Path:
    """The key ``evidence/`` was signed with: the trusted one, or the source key the provenance verifies with."""
    if trust is None:
        return public_key
    return next((k for k in trust.source_keys if built_model_name(folder, k)), trust.source_keys[0])


def collect(
    folder: Path, public_key: Path, *, model_name: str, version: str | None, trust: EnvTrust | None = None
) -> Collected:
    """Read a folder that passed verification; a file of its evidence folders that does not verify refuses."""
    key = _evidence_key(folder, public_key, trust)
    ev = read_evidence(folder, key)
    statements, problems = list(ev.statements), [p for ps in ev.problems.values() for p in ps]
    if trust is not None:
        env = read_evidence(folder, trust.key, environment_dir(trust.environment), PROMOTED_CHECK_OF)
        statements += env.statements
        problems += [p for ps in env.problems.values() for p in ps]
    if problems:
        raise ReportRefusedError([f"evidence: {p}" for p in problems])
    checks = verify_release(
        folder, public_key, require=(GATES, APPROVED), model_name=model_name, version=version, trust=trust
    ).checks
    config = folder / CONFIG
    return Collected(
        signed=signature_manifest(folder / SIGNATURE),
        provenance=dsse_verify(json.loads((folder / PROVENANCE).read_text()), load_public_key(key)),
        config=json.loads(config.read_text()) if config.is_file() else {},
        statements=tuple(sorted(statements, key=lambda s: s.time)),
        evidence=evidence_files(folder),
        checks=tuple(checks),
        json_files={
            rel: json.loads((folder / rel).read_text()) for rel in READ_JSON if (folder / rel).is_file()
        },
        signature_digest=file_digest(folder / SIGNATURE).value,
    )


def audit_facts(log: AuditLog, tracking_uri: str | None, model: str, version: str | None) -> AuditFacts:
    """The audit log's chain and signed head checked (against the registry's anchors, when a registry is
    given), and its entries about `model` `version`."""
    from attestflow.audit import log_identity, registry_anchors

    anchors = registry_anchors(tracking_uri, log_identity(log.store)) if tracking_uri else []
    ok, line, reason = log.verify(anchors)
    detail = reason if ok else f"line {line}: {reason}"
    entries = tuple(
        e
        for e in log.entries()
        if e["model"] == model and version is not None and str(e["version"]) == version
    )
    return AuditFacts(ok, detail, log.store.location, entries)


def _refuse_unless_verified(result: Verification) -> None:
    if not result.ok:
        raise ReportRefusedError(result.failures)


def gather(
    uri: str,
    tracking_uri: str,
    public_key: Path,
    *,
    declared_text: Declared,
    audit: AuditLog | None,
    trust: EnvTrust | None = None,
) -> Gathered:
    """Resolve `uri` once, verify that version as `attestflow verify` does, and read what it holds.

    Refused (`ReportRefusedError`) when any check of the model fails: a report about bytes that
    are not what was signed would document another model than the one it names.
    """
    from attestflow.verify import resolve_version, verify_model_uri

    name, version, _ = resolve_version(uri, tracking_uri)
    held: list[Collected] = []
    result = verify_model_uri(
        f"models:/{name}/{version}",
        tracking_uri,
        public_key,
        require=(PROVENANCE_CHECKS,),
        trust=trust,
        use=_keep(held, public_key, name, version, trust),
    )
    _refuse_unless_verified(result)
    facts = audit_facts(audit, tracking_uri, name, version) if audit is not None else None
    return Gathered(result.target, name, version, result, held[0], declared_text, facts)


def gather_folder(
    folder: Path,
    public_key: Path,
    *,
    declared_text: Declared,
    audit: AuditLog | None = None,
    version: str | None = None,
) -> Gathered:
    """The same for a downloaded model folder, offline as `attestflow verify FOLDER` is: no registry, no data."""
    result = verify_release(
        folder, public_key, require=(PROVENANCE_CHECKS,), check_data=False, target=str(folder)
    )
    _refuse_unless_verified(result)
    name = built_model_name(folder, public_key) or ""
    facts = audit_facts(audit, None, name, version) if audit is not None else None
    held = collect(folder, public_key, model_name=name, version=version)
    return Gathered(str(folder), name, version, result, held, declared_text, facts)


def _keep(
    held: list[Collected], public_key: Path, name: str, version: str, trust: EnvTrust | None
) -> Callable[[Path], object]:
    return lambda folder: held.append(
        collect(folder, public_key, model_name=name, version=version, trust=trust)
    )
