"""Signed evidence: the gate verdict and the approval are required, bound to this model, and checked alone."""

from __future__ import annotations

import base64
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestflow.bundle import ATTESTATION, MODEL, PROVENANCE, bundle_digest, signed_files
from attestflow.digests import Digest, file_digest
from attestflow.dsse import dsse_sign
from attestflow.errors import BadInputError
from attestflow.evidence import (
    EVIDENCE_DIR,
    GATES_KEY,
    VSA,
    approval_statement,
    attachment,
    canary_statement,
    evidence_name,
    kind_of,
    statement_time,
    verification_summary,
)
from attestflow.evidence_check import parse_requirements, release_evidence, verify_release
from attestflow.keys import KeyPair, ensure_keypair, load_private_key
from attestflow.lineage import CodeRevision
from attestflow.outcomes import ApprovalRecord
from attestflow.provenance import statement as provenance
from attestflow.records import GateDecision, GateReport, Invocation, RegistrationRecord, SignatureRecord
from attestflow.unchanged import canary_problem

MODEL_NAME = "credit"
POLICY = "ab" * 32


class Bundle:
    """A model folder with a signed provenance, and helpers that add signed evidence to it."""

    def __init__(self, root: Path, keys: KeyPair) -> None:
        self.root, self.keys = root, keys
        (root / ATTESTATION).mkdir(parents=True)
        (root / MODEL).write_bytes(b"onnx bytes of the model")
        (root / ATTESTATION / "config.json").write_text("{}")
        onnx = file_digest(root / MODEL)
        self.registered = RegistrationRecord(MODEL_NAME, "2", f"models:/{MODEL_NAME}/2", "run")
        prov = provenance(
            subjects=[{"name": MODEL, "digest": {"sha256": onnx.value}}],
            external_parameters={"model_name": MODEL_NAME},
            internal_parameters={},
            dependencies=[],
            builder_id="test",
            invocation_id="run",
            started_on="2024-01-01T00:00:00+00:00",
            finished_on="2024-01-01T00:00:00+00:00",
        )
        (root / PROVENANCE).write_text(json.dumps(dsse_sign(prov, self.private)))
        self.bundle = bundle_digest(signed_files(root))
        self.signed = SignatureRecord(
            root, onnx, self.bundle, root, onnx, root / PROVENANCE, file_digest(root / PROVENANCE), "k", "rk"
        )
        self.clock = datetime(2024, 1, 1, tzinfo=UTC)

    @property
    def private(self) -> ec.EllipticCurvePrivateKey:
        return load_private_key(self.keys.private_key)

    def tick(self) -> str:
        self.clock += timedelta(minutes=1)
        return self.clock.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def add(self, stmt: dict[str, Any], key: ec.EllipticCurvePrivateKey | None = None) -> Path:
        path = self.root / EVIDENCE_DIR / evidence_name(kind_of(stmt), statement_time(stmt))
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(dsse_sign(stmt, key or self.private)))
        if (named := attachment(stmt)) is not None:
            shutil.copy(self.root.parent / "gates.json", self.root / named)
        return path

    def verdict(self, passed: bool = True, onnx: str | None = None, policy: str = POLICY) -> dict[str, Any]:
        decision = GateDecision("performance", "f1", 0.8 if passed else 0.4, 0.6, 0.2, passed, "r", policy)
        report = GateReport(
            "m",
            Digest("sha256", onnx or self.signed.onnx_digest.value, "file bytes"),
            Digest("sha256", policy, "canonical JSON"),
            "cpu",
            None,
            passed,
            [decision],
            1.0,
        )
        gates_json = self.root.parent / "gates.json"
        gates_json.write_text(json.dumps({"passed": passed}))
        return verification_summary(
            report, self.registered, self.signed, gates_json, policy_uri="gates.yaml", time=self.tick()
        )

    def approval(self, approved: bool = True, digest: str | None = None) -> dict[str, Any]:
        at = self.tick()
        record = ApprovalRecord(approved, "user:ann", "looks good", digest or self.bundle.value, at, "human")
        invocation = Invocation("c.yaml", [], "run", at, "user:bob", CodeRevision("abc", False))
        return approval_statement(record, self.registered, invocation)

    def canary(self, passed: bool) -> dict[str, Any]:
        return canary_statement(
            self.registered,
            self.signed,
            passed=passed,
            reasons=["latency 3x"],
            previous="1",
            time=self.tick(),
        )

    def checks(self, **kwargs: Any) -> dict[str, tuple[bool, str]]:
        args: dict[str, Any] = {"model_name": MODEL_NAME, "version": "2", **kwargs}
        return {c.name: (c.ok, c.detail) for c in release_evidence(self.root, self.keys.public_key, **args)}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return ensure_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def bundle(tmp_path: Path, keys: KeyPair) -> Bundle:
    return Bundle(tmp_path / "model", keys)


def _released(bundle: Bundle) -> Bundle:
    bundle.add(bundle.verdict())
    bundle.add(bundle.approval())
    return bundle


def test_a_passed_verdict_and_an_approval_of_this_bundle_hold(bundle: Bundle) -> None:
    checks = _released(bundle).checks(policy_digest=f"sha256:{POLICY}")
    assert checks["gate verdict"][0] and checks["approval"][0], checks
    assert "PASSED" in checks["gate verdict"][1] and "user:ann" in checks["approval"][1]


def test_no_evidence_at_all_fails_both_checks_naming_what_is_missing(bundle: Bundle) -> None:
    checks = bundle.checks()
    assert checks["gate verdict"] == (
        False,
        "no signed verification summary (gate verdict) for this model.onnx",
    )
    assert not checks["approval"][0] and "no signed approval" in checks["approval"][1]


def test_a_failed_verdict_fails_and_names_the_failing_gate(bundle: Bundle) -> None:
    bundle.add(bundle.verdict(passed=False))
    bundle.add(bundle.approval())
    ok, detail = bundle.checks()["gate verdict"]
    assert not ok and "FAILED" in detail and "performance/f1" in detail


def test_the_newest_verdict_counts(bundle: Bundle) -> None:
    bundle.add(bundle.verdict(passed=True))
    bundle.add(bundle.verdict(passed=False))
    assert not bundle.checks()["gate verdict"][0]
    bundle.add(bundle.verdict(passed=True))
    assert bundle.checks()["gate verdict"][0]


def test_an_edited_summary_payload_fails(bundle: Bundle) -> None:
    path = bundle.add(bundle.verdict(passed=False))
    bundle.add(bundle.approval())
    envelope = json.loads(path.read_text())
    stmt = json.loads(base64.b64decode(envelope["payload"]))
    stmt["predicate"]["verificationResult"] = "PASSED"
    envelope["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    path.write_text(json.dumps(envelope))
    ok, detail = bundle.checks()["gate verdict"]
    assert not ok and "no signature in the envelope verifies" in detail


def test_an_edited_gates_json_beside_the_summary_fails(bundle: Bundle) -> None:
    _released(bundle)
    (gates_json,) = (bundle.root / EVIDENCE_DIR).glob("*.gates.json")
    gates_json.write_text('{"passed": true, "edited": 1}')
    ok, detail = bundle.checks()["gate verdict"]
    assert not ok and f"{EVIDENCE_DIR}/{gates_json.name} does not match the SHA-256 signed in" in detail
    gates_json.unlink()
    ok, detail = bundle.checks()["gate verdict"]
    assert not ok and "is missing" in detail


def test_a_file_no_signed_statement_names_fails(bundle: Bundle) -> None:
    _released(bundle)
    (bundle.root / EVIDENCE_DIR / "verification_summary-extra.gates.json").write_text("{}")
    ok, detail = bundle.checks()["gate verdict"]
    assert not ok and "verification_summary-extra.gates.json is not named by any signed statement" in detail


def test_a_summary_signed_by_another_key_fails(bundle: Bundle) -> None:
    bundle.add(bundle.verdict(), key=ec.generate_private_key(ec.SECP256R1()))
    bundle.add(bundle.approval())
    ok, detail = bundle.checks()["gate verdict"]
    assert not ok and "no signature in the envelope verifies" in detail


def test_a_summary_about_another_model_onnx_fails(bundle: Bundle) -> None:
    bundle.add(bundle.verdict(onnx="cd" * 32))
    bundle.add(bundle.approval())
    ok, detail = bundle.checks()["gate verdict"]
    assert not ok and "about another model.onnx than the one present" in detail


def test_evidence_about_another_registered_model_fails(bundle: Bundle) -> None:
    _released(bundle)
    checks = bundle.checks(model_name="credit-default")
    assert not checks["gate verdict"][0] and "not 'credit-default'" in checks["gate verdict"][1]
    assert not checks["approval"][0] and "not 'credit-default'" in checks["approval"][1]


def test_a_verdict_under_another_gate_policy_fails_when_the_policy_is_given(bundle: Bundle) -> None:
    _released(bundle)
    ok, detail = bundle.checks(policy_digest="sha256:" + "ef" * 32)["gate verdict"]
    assert not ok and "no signed verification summary under gate policy sha256:efefef" in detail


def test_an_approval_of_another_bundle_fails(bundle: Bundle) -> None:
    bundle.add(bundle.verdict())
    bundle.add(bundle.approval(digest="99" * 32))
    ok, detail = bundle.checks()["approval"]
    assert not ok and "about another release-bundle" in detail


def test_a_rejection_after_an_approval_fails(bundle: Bundle) -> None:
    _released(bundle)
    bundle.add(bundle.approval(approved=False))
    ok, detail = bundle.checks()["approval"]
    assert not ok and "latest signed decision is rejected by user:ann" in detail


def test_a_canary_rejection_stands_until_a_new_approval(bundle: Bundle) -> None:
    _released(bundle)
    bundle.add(bundle.canary(passed=True))
    assert bundle.checks()["approval"][0]
    bundle.add(bundle.canary(passed=False))
    ok, detail = bundle.checks()["approval"]
    assert not ok and "canary rejected" in detail and "needs a new approval" in detail
    bundle.add(bundle.approval())
    assert bundle.checks()["approval"][0]


def test_an_unchanged_release_needs_a_passed_canary_after_the_approval_on_the_sample_configured_now(
    bundle: Bundle, tmp_path: Path
) -> None:
    sample = tmp_path / "recent.csv"
    sample.write_text("a,b\n1,2\n")
    _released(bundle)

    def problem(on: Path | None = sample) -> str | None:
        return canary_problem(bundle.root, bundle.keys.public_key, on)

    assert problem() == "no canary verdict after its approval"  # e.g. killed between promotion and canary

    def canary(passed: bool) -> dict[str, Any]:
        return canary_statement(
            bundle.registered,
            bundle.signed,
            passed=passed,
            reasons=[],
            previous="1",
            time=bundle.tick(),
            sample=sample,
        )

    bundle.add(canary(passed=True))
    assert problem() is None
    assert problem(None) == "the canary sample differs from the one its verdict scored"
    sample.write_text("a,b\n1,3\n")
    assert problem() == "the canary sample differs from the one its verdict scored"
    bundle.add(canary(passed=False))
    assert problem() == "its newest canary verdict is FAILED"
    bundle.add(bundle.approval())
    assert problem() == "no canary verdict after its approval"


def test_a_file_in_the_evidence_folder_that_is_not_a_signed_statement_fails(bundle: Bundle) -> None:
    _released(bundle)
    (bundle.root / EVIDENCE_DIR / "approval-x.dsse.json").write_text("not json")
    ok, detail = bundle.checks()["approval"]
    assert not ok and "evidence/approval-x.dsse.json" in detail


def test_a_fifo_or_a_link_in_the_evidence_folder_fails_without_hanging(bundle: Bundle) -> None:
    _released(bundle)
    os.mkfifo(bundle.root / EVIDENCE_DIR / "verification_summary-fifo.dsse.json")
    (bundle.root / EVIDENCE_DIR / "approval-link.dsse.json").symlink_to("/proc/self/mem")
    checks = bundle.checks()
    assert (
        not checks["gate verdict"][0] and "fifo.dsse.json is not a regular file" in checks["gate verdict"][1]
    )
    assert not checks["approval"][0] and "link.dsse.json is not a regular file" in checks["approval"][1]


def test_a_statement_under_another_kinds_file_name_fails(bundle: Bundle) -> None:
    _released(bundle)
    stmt = bundle.approval()
    path = bundle.root / EVIDENCE_DIR / "verification_summary-renamed.dsse.json"
    path.write_text(json.dumps(dsse_sign(stmt, bundle.private)))
    ok, detail = bundle.checks()["gate verdict"]
    assert not ok and "under another kind's name" in detail


def test_offline_verification_takes_the_model_name_from_the_signed_provenance(bundle: Bundle) -> None:
    _released(bundle)
    result = verify_release(bundle.root, bundle.keys.public_key, require=("gates", "approval"))
    assert result.ok, result.failures
    assert [c.name for c in result.checks] == ["gate verdict", "approval"]
    (bundle.root / PROVENANCE).unlink()
    result = verify_release(bundle.root, bundle.keys.public_key, require=("gates", "approval"))
    assert not result.ok and "no verified provenance names the model" in result.failures[0]


@pytest.mark.parametrize("text", ["", "gates,signature", "all"])
def test_require_takes_only_known_checks(text: str) -> None:
    with pytest.raises(BadInputError, match="provenance,gates,approval"):
        parse_requirements(text)


def test_the_statements_verify_with_securesystemslib_and_parse_with_the_in_toto_bindings(
    bundle: Bundle,
) -> None:
    from google.protobuf import json_format
    from in_toto_attestation.predicates.vsa.v1 import vsa_pb2
    from in_toto_attestation.v1 import statement_pb2
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    _released(bundle)
    public = bundle.private.public_key()
    trusted = SSlibKey.from_crypto(public, keyid=bundle.keys.key_id)
    statements = {}
    for path in (bundle.root / EVIDENCE_DIR).glob("*.dsse.json"):
        envelope = Envelope.from_dict(json.loads(path.read_text()))
        envelope.verify([trusted], 1)
        stmt = json_format.ParseDict(json.loads(envelope.payload), statement_pb2.Statement())
        statements[stmt.predicate_type] = stmt
    predicate = json_format.MessageToDict(statements[VSA].predicate)
    # The spec makes verifiedLevels an array; the bindings' proto still has a string (in-toto/attestation#425).
    assert predicate.pop("verifiedLevels") == ["ATTESTFLOW_GATES_PASSED"]
    vsa = json_format.ParseDict(predicate, vsa_pb2.VerificationSummary(), ignore_unknown_fields=True)
    assert vsa.verification_result == "PASSED" and vsa.policy.digest["sha256"] == POLICY
    assert vsa.resource_uri == "models:/credit/2"
    assert statements[VSA].subject[0].digest["sha256"] == bundle.signed.onnx_digest.value
    gates = predicate[GATES_KEY]
    assert gates["model"] == {"name": "credit", "version": "2"} and gates["gates"][0]["gate"] == "performance"
    approval = statements["https://attestflow.dev/approval/v1"]
    assert approval.subject[0].digest["sha256"] == bundle.bundle.value
    assert approval.predicate["decision"] == "approved" and approval.predicate["triggeredBy"] == "user:bob"
