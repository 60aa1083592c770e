"""Signed evidence about a released model: the gate verdict, the approval and the canary's verdict.

An MLflow alias, a ``gates_passed`` tag or an audit line can be edited by anyone who can
write to the registry; none of them proves that a version passed its gates or was approved.
Each decision of a release is therefore also an in-toto Statement v1, signed with the release
key in a DSSE envelope (`attestflow.dsse`), that any DSSE verifier checks with the public key:

- the gate verdict is a SLSA Verification Summary (VSA v1) about the ``model.onnx`` digest,
  naming the gate policy's SHA-256, the provenance it relied on, ``gates.json`` (stored
  beside it, bound by its digest) and every gate's outcome (project fields under
  `GATES_KEY`, which VSA parsers ignore);
- the approval (`APPROVAL`) is about the release bundle digest: decision, approver(s), reason,
  time, mode, and the approver's own signed statement when they signed one;
- the canary's verdict (`CANARY`) is about the ``model.onnx`` digest, and names the digest of
  the configured sample it scored (null: the held-out split, which the release key covers).

Evidence is made after the bundle is signed and registered, so it cannot be in the
model-signing manifest: each envelope is added to the registered model's artifacts under
`EVIDENCE_DIR`, one file per statement, never overwritten, each verified on its own
(`attestflow.evidence_check`). Specs: https://slsa.dev/spec/v1.0/verification_summary,
https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from attestflow.approval import APPROVAL_PREDICATE, ApprovalRequest
from attestflow.approval import approval_statement as decision_statement
from attestflow.bundle import EVIDENCE, MODEL
from attestflow.digests import Digest, file_digest
from attestflow.dsse import statement
from attestflow.outcomes import ApprovalRecord
from attestflow.records import GateReport, Invocation, RegistrationRecord, SignatureRecord

EVIDENCE_DIR = EVIDENCE
"""Folder of the registered model holding signed statements made after signing (not in the manifest)."""
VSA = "https://slsa.dev/verification_summary/v1"
APPROVAL = APPROVAL_PREDICATE
CANARY = "https://attestflow.dev/canary/v1"
PROMOTION = "https://attestflow.dev/promotion/v1"
"""A version copied into another environment: its source evidence bound to the target version."""
MODEL_CARD = "https://attestflow.dev/model-card/v1"
"""The release's model card (`attestflow.model_card`), about the ``model.onnx``; its markdown is stored beside it."""
GATES_KEY = "https://attestflow.dev/gates/v1"
"""Key of the VSA predicate's project-specific fields: model, gates.json digest, each gate's outcome."""
VERIFIER_ID = "https://attestflow.dev/verifiers/gate-suite@v1"
PASSED_LEVEL = "ATTESTFLOW_GATES_PASSED"
"""The VSA's ``verifiedLevels`` entry for a version that passed every gate (not SLSA_: a custom level)."""
KINDS = {
    "verification_summary": VSA,
    "approval": APPROVAL,
    "canary": CANARY,
    "promotion": PROMOTION,
    "model_card": MODEL_CARD,
}
"""File name prefix of each kind of evidence -> its predicate type."""

ENVELOPE = ".dsse.json"
GATES_JSON = ".gates.json"
CARD_MD = ".card.md"
"""Suffix of the model card's markdown stored beside the statement that names its digest."""
"""Suffix of the copy of ``gates.json`` stored beside the verification summary that names its digest."""


def now() -> str:
    """The current UTC time as RFC 3339 with microseconds, the form every evidence time takes."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime:
    """An ISO 8601 time of a statement (``Z`` or an offset; a time without one is taken as UTC)."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def evidence_name(kind: str, time: str, suffix: str = ENVELOPE) -> str:
    """The file name of one statement (or a file it names): kind and UTC time, so none is ever replaced."""
    stamp = parse_time(time).astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{kind}-{stamp}{suffix}"


def named_by(predicate_type: str, predicate: dict[str, Any]) -> dict[str, Any]:
    """The file a statement names by digest (``{uri, digest: {sha256}}``), or ``{}``.

    A verdict names its ``gates.json``; a promotion names the target environment's own model
    signature of the bundle (``target.signature``). Each is stored beside the statement.
    """
    if predicate_type == VSA:
        named = predicate.get(GATES_KEY, {}).get("gatesJson")
    elif predicate_type == PROMOTION:
        named = predicate.get("target", {}).get("signature")
    elif predicate_type == MODEL_CARD:
        named = predicate.get("markdown")
    else:
        named = None
    return dict(named) if isinstance(named, dict) else {}


def attachment(stmt: dict[str, Any]) -> str | None:
    """The path (under `EVIDENCE_DIR` or an environment's folder) of the file a statement names by digest."""
    uri = named_by(str(stmt.get("predicateType")), stmt.get("predicate", {})).get("uri")
    return None if uri is None else str(uri)


def _model_onnx(digest: Digest) -> list[dict[str, Any]]:
    return [{"name": MODEL, "digest": {digest.algorithm: digest.value}}]


def verification_summary(
    gates: GateReport,
    registered: RegistrationRecord,
    signed: SignatureRecord,
    gates_json: Path,
    *,
    policy_uri: str,
    time: str | None = None,
    under: str = EVIDENCE_DIR,
) -> dict[str, Any]:
    """The gate verdict as a SLSA VSA v1 statement about the gated ``model.onnx``, naming `gates_json`
    (stored beside it in the folder `under`)."""
    passed, time = gates.passed, time or now()
    gates_file = f"{under}/{evidence_name('verification_summary', time, GATES_JSON)}"
    predicate = {
        "verifier": {"id": VERIFIER_ID},
        "timeVerified": time,
        "resourceUri": registered.model_uri,
        "policy": {"uri": policy_uri, "digest": {"sha256": gates.policy_digest.value}},
        "inputAttestations": [
            {"uri": "attestation/provenance.dsse.json", "digest": {"sha256": signed.provenance_digest.value}}
        ],
        "verificationResult": "PASSED" if passed else "FAILED",
        "verifiedLevels": [PASSED_LEVEL] if passed else ["FAILED"],
        "slsaVersion": "1.0",
        GATES_KEY: {
            "model": {"name": registered.model_name, "version": registered.version},
            "gatesJson": {"uri": gates_file, "digest": {"sha256": file_digest(gates_json).value}},
            "baseline": gates.baseline,
            "provider": gates.provider,
            "gates": [d.summary() for d in gates.decisions],
        },
    }
    return statement(_model_onnx(gates.model_digest), VSA, predicate)


def approval_statement(
    approval: ApprovalRecord, registered: RegistrationRecord, invocation: Invocation
) -> dict[str, Any]:
    """The approval decision as a statement about the release bundle digest it was made for.

    The predicate is the approver's own (`attestflow.approval.approval_statement`, the one
    builder of it), plus who triggered the run, the approver's key and signed envelope, and every
    approver whose approval counted with how many the policy required (``approver`` is the last).
    """
    request = ApprovalRequest(
        model_name=registered.model_name,
        version=registered.version,
        digest=approval.digest.removeprefix("sha256:"),
        flow_run_id=invocation.flow_run_id,
        triggered_by=invocation.triggered_by,
    )
    stmt = decision_statement(
        request, approval.approved, approval.approver, approval.reason, approval.at, approval.mode
    )
    stmt["predicate"].update(
        triggeredBy=invocation.triggered_by,
        approverKeyId=approval.approver_key_id,
        approverEnvelope=approval.approver_envelope,
        approvers=list(approval.approvers) or [approval.approver],
        required=approval.required,
    )
    return stmt


def canary_statement(
    registered: RegistrationRecord,
    signed: SignatureRecord,
    *,
    passed: bool,
    reasons: list[str],
    previous: str | None,
    time: str | None = None,
    sample: Path | None = None,
) -> dict[str, Any]:
    """The canary's verdict on the promoted ``model.onnx`` (against the champion `previous`, on `sample`)."""
    predicate = {
        "result": "PASSED" if passed else "FAILED",
        "reasons": reasons,
        "model": {"name": registered.model_name, "version": registered.version},
        "previous": previous,
        "time": time or now(),
        "sample": canary_sample_ref(sample),
    }
    return statement(_model_onnx(signed.onnx_digest), CANARY, predicate)


def canary_sample_ref(sample: Path | None) -> dict[str, str] | None:
    """What a canary verdict names of its configured sample (path and SHA-256); None: the held-out split."""
    return None if sample is None else {"path": str(sample), "sha256": file_digest(sample).value}


def model_card_statement(
    card: dict[str, Any], markdown: Path, onnx: Digest, under: str = EVIDENCE_DIR
) -> dict[str, Any]:
    """The model card as a statement about ``model.onnx``: the card JSON, naming its markdown (stored beside it)."""
    time = str(card["generated"])
    uri = f"{under}/{evidence_name('model_card', time, CARD_MD)}"
    predicate = {
        **card,
        "time": time,
        "markdown": {"uri": uri, "digest": {"sha256": file_digest(markdown).value}},
    }
    return statement(_model_onnx(onnx), MODEL_CARD, predicate)


def statement_time(stmt: dict[str, Any]) -> str:
    """When the decision a statement records was made (the VSA's ``timeVerified``, else ``time``)."""
    predicate = stmt.get("predicate", {})
    return str(predicate.get("timeVerified") or predicate.get("time") or "")


def kind_of(stmt: dict[str, Any]) -> str:
    """The file name prefix for a statement's predicate type."""
    return next(k for k, t in KINDS.items() if t == stmt.get("predicateType"))
