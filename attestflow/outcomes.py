"""Records of a release's outcome: approval, promotion, canary, signed evidence, and the summary.

They sit beside `attestflow.records` (what the stages before promotion return) and build on
it; `ReleaseSummary` gathers every record of one release for the CLI and the release folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attestflow.digests import Digest
from attestflow.records import (
    AuditEvent,
    DataValidationRecord,
    GateReport,
    OnnxExportRecord,
    OnnxValidationRecord,
    RegistrationRecord,
    SignatureRecord,
    SnapshotRecord,
    TrainingRecord,
)


@dataclass(frozen=True)
class PromotionRecord:
    """An alias moved to a model version."""

    model_name: str
    alias: str
    version: str
    previous_version: str | None
    previous_alias_version: str | None = None
    """What the previous alias named before this move (set by `promote`), put back if the move is undone."""


@dataclass(frozen=True)
class ApprovalRecord:
    """Who decided a promotion, when, why, and for which bundle digest."""

    approved: bool
    approver: str
    reason: str
    digest: str
    at: str
    mode: str
    approver_key_id: str | None = None
    """Id of the approver's own key that signed the decision (``approve.approver_keys``), if any."""
    approver_envelope: dict[str, Any] | None = None
    """The approver's DSSE envelope over their approval statement, when they signed it."""
    approvers: tuple[str, ...] = ()
    """Every distinct approver whose approval counted, in order (`approver` is the last); empty in auto mode."""
    required: int = 1
    """How many distinct approvals the policy required (``approve.required``)."""


@dataclass(frozen=True)
class CanaryRecord:
    """How the new champion compared with the previous one on the canary sample."""

    model_name: str
    version: str
    previous_version: str | None
    rows: int
    error_rate: float
    disagreement: float
    latency_ratio: float
    passed: bool
    reason: str
    quality: list[str] = field(default_factory=list)
    """What the quality comparison on labelled rows found, one line per metric (empty: not compared)."""

    def audit_events(self) -> list[AuditEvent]:
        return [AuditEvent("canary", {"passed": self.passed, "reason": self.reason}, self.version)]


@dataclass(frozen=True)
class EvidenceRecord:
    """A signed statement about a model version, added to its evidence (see `attestflow.evidence`)."""

    model_name: str
    version: str
    kind: str
    """``verification_summary``, ``approval`` or ``canary``."""
    result: str
    """What it says: PASSED or FAILED, approved or rejected."""
    artifact_path: str
    """Where it is among the registered model's artifacts (``evidence/<kind>-<time>.dsse.json``)."""
    local_path: Path
    """The copy in the release folder."""
    digest: Digest
    """SHA-256 of the envelope file."""

    def audit_events(self) -> list[AuditEvent]:
        details = {
            "kind": self.kind,
            "result": self.result,
            "path": self.artifact_path,
            "sha256": self.digest.value,
        }
        return [AuditEvent("evidence_signed", details, self.version)]


@dataclass(frozen=True)
class PromotionOutcome:
    """How the promotion protocol (approval, promotion, canary, roll-back) ended for one version."""

    version: str
    approval: ApprovalRecord | None
    """None when a gate already said no."""
    promotion: PromotionRecord | None
    """None unless the version is the champion now."""
    canary: CanaryRecord | None
    failures: list[str]
    """Why the version was not released, one line each; empty when it was."""
    rolled_back: bool = False
    """True when the alias was moved, then moved back because a later step said no."""

    @property
    def released(self) -> bool:
        return not self.failures

    def audit_events(self) -> list[AuditEvent]:
        if self.failures:
            return [AuditEvent("release_refused", {"reasons": self.failures}, self.version)]
        return [AuditEvent("release_completed", {}, self.version, names_run=True)]


@dataclass(frozen=True)
class UnchangedRelease:
    """A re-run that made the version already serving: it is the champion, its evidence verified as an alias move does.

    Its gates, approval, promotion and canary are not run again (`attestflow.unchanged`).
    """

    model_name: str
    version: str
    alias: str
    release_key: str
    policy_digest: str
    """``sha256:<hex>`` of the current gate policy, under which its signed verdict PASSED."""
    evidence: dict[str, str]
    """Each evidence file verified (path among the version's artifacts -> SHA-256)."""

    @property
    def message(self) -> str:
        return f"unchanged: version {self.version} is already {self.alias} with verified evidence"

    def audit_events(self) -> list[AuditEvent]:
        details = {
            "alias": self.alias,
            "release_key": self.release_key,
            "policy": self.policy_digest,
            "evidence": self.evidence,
        }
        return [AuditEvent("release_unchanged", details, self.version, names_run=True)]


@dataclass(frozen=True)
class ReleaseSummary:
    """What a release produced, for the CLI summary and the release folder."""

    model_name: str
    release_dir: Path
    snapshot: SnapshotRecord
    validation: DataValidationRecord
    training: TrainingRecord
    onnx: OnnxExportRecord
    onnx_validation: OnnxValidationRecord
    signature: SignatureRecord
    registration: RegistrationRecord
    flow_run_id: str | None
    gates: GateReport | None = None
    """None when the release was unchanged (`unchanged`): the gates were not run again."""
    approval: ApprovalRecord | None = None
    """None when a gate already said no, or the release was unchanged."""
    promotion: PromotionRecord | None = None
    canary: CanaryRecord | None = None
    """None when nothing was promoted."""
    unchanged: UnchangedRelease | None = None
    """Set when this re-run made the version already serving, verified: nothing after registration ran."""
