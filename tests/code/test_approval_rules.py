"""Approval rules: who may decide, on which digest, and what an approver's signature must cover."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestflow.approval import (
    APPROVAL_PREDICATE,
    Answer,
    ApprovalRequest,
    approval_statement,
    check_answer,
    check_approvers,
    sign_answer,
    utc_now,
)
from attestflow.audit import AuditLog
from attestflow.dsse import dsse_sign
from attestflow.errors import ConfigError
from attestflow.keys import key_id
from attestflow.policy import BaselinePolicy, GatePolicy
from attestflow.settings import ApproveConfig

DIGEST = "ab" * 32
REQUEST = ApprovalRequest("credit", "3", DIGEST, "run-1", "user:scheduler")


def _write_public(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
def alice_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def cfg(tmp_path: Path, alice_key: ec.EllipticCurvePrivateKey) -> ApproveConfig:
    """Human mode: alice (who signs), bob and the scheduler may decide."""
    return ApproveConfig(
        mode="human",
        approvers=["alice", "bob", "scheduler"],
        approver_keys={"alice": _write_public(alice_key, tmp_path / "alice.pub.pem")},
    )


def _answer(approver: str = "bob", **changes: Any) -> Answer:
    return replace(Answer(True, approver, "gates and lineage checked", DIGEST[:16]), **changes)


def test_a_listed_approver_with_the_right_digest_is_accepted(cfg: ApproveConfig) -> None:
    verdict = check_answer(cfg, REQUEST, _answer("bob"))
    assert verdict.refused is None and verdict.approver == "user:bob" and verdict.key_id is None


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (_answer("mallory"), "user:mallory is not in approve.approvers"),
        (_answer("bob", digest="f" * 64), "is not the bundle's"),
        (_answer("bob", digest=DIGEST[:8]), "is not the bundle's"),
        (_answer("scheduler"), "user:scheduler triggered this release and may not approve it"),
        (_answer(""), "no approver named"),
        (_answer("   "), "no approver named"),
        (_answer("bob", reason=""), "no reason given"),
        (_answer("bob", reason="  "), "no reason given"),
        (_answer("bob", approve=False, reason=""), "no reason given"),
        (_answer("mallory", approve=False), "user:mallory is not in approve.approvers"),
        (_answer("bob", signed="{}"), "user:bob signed the decision but has no key"),
    ],
)
def test_an_answer_that_breaks_a_rule_is_refused_with_the_reason(
    cfg: ApproveConfig, answer: Answer, why: str
) -> None:
    verdict = check_answer(cfg, REQUEST, answer)
    assert verdict.refused is not None and why in verdict.refused


def test_self_approval_is_allowed_only_when_the_policy_says_so(cfg: ApproveConfig) -> None:
    own = _answer("scheduler")
    assert check_answer(cfg.model_copy(update={"allow_self_approval": True}), REQUEST, own).refused is None
    assert check_answer(cfg, REQUEST, replace(own, approve=False)).refused is None, "may withdraw own run"


def test_an_approver_with_a_key_is_accepted_only_with_a_signature_by_that_key(
    cfg: ApproveConfig, alice_key: ec.EllipticCurvePrivateKey
) -> None:
    full = REQUEST
    signed = sign_answer(full, True, "user:alice", "gates and lineage checked", alice_key)
    verdict = check_answer(cfg, REQUEST, _answer("alice", digest=DIGEST, signed=signed))
    assert verdict.refused is None and verdict.key_id == key_id(alice_key.public_key())
    assert verdict.envelope == json.loads(signed)
    unsigned = check_answer(cfg, REQUEST, _answer("alice"))
    assert unsigned.refused is not None and "must sign" in unsigned.refused


def test_the_approvers_envelope_verifies_with_securesystemslib_and_parses_with_the_in_toto_bindings(
    alice_key: ec.EllipticCurvePrivateKey,
) -> None:
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    envelope = json.loads(sign_answer(REQUEST, True, "user:alice", "checked", alice_key))
    public = alice_key.public_key()
    parsed = Envelope.from_dict(envelope)
    parsed.verify([SSlibKey.from_crypto(public, keyid=key_id(public))], 1)
    stmt = json_format.ParseDict(json.loads(parsed.payload), statement_pb2.Statement())
    assert stmt.predicate_type == APPROVAL_PREDICATE
    assert stmt.subject[0].name == "release-bundle" and stmt.subject[0].digest["sha256"] == DIGEST
    assert stmt.predicate["decision"] == "approved" and stmt.predicate["approver"] == "user:alice"


def _forged(key: ec.EllipticCurvePrivateKey, **predicate: Any) -> str:
    stmt = approval_statement(REQUEST, True, "user:alice", "gates and lineage checked", utc_now(), "human")
    stmt["predicate"].update(predicate)
    return json.dumps(dsse_sign(stmt, key))


@pytest.mark.parametrize(
    ("signed", "why"),
    [
        (
            lambda k: sign_answer(REQUEST, True, "user:alice", "gates and lineage checked", _other()),
            "not user:alice's",
        ),
        (lambda k: sign_answer(REQUEST, False, "user:alice", "gates and lineage checked", k), "decision"),
        (lambda k: sign_answer(REQUEST, True, "user:bob", "gates and lineage checked", k), "approver"),
        (lambda k: sign_answer(REQUEST, True, "user:alice", "another reason", k), "reason"),
        (
            lambda k: sign_answer(
                replace(REQUEST, digest="cd" * 32), True, "user:alice", "gates and lineage checked", k
            ),
            "subject",
        ),
        (
            lambda k: sign_answer(
                replace(REQUEST, flow_run_id="run-0"), True, "user:alice", "gates and lineage checked", k
            ),
            "flowRunId",
        ),
        (
            lambda k: sign_answer(
                replace(REQUEST, version="2"), True, "user:alice", "gates and lineage checked", k
            ),
            "model",
        ),
        (lambda k: _forged(k, mode="auto"), "mode"),
        (lambda k: _forged(k, time=""), "has no time"),
        (lambda k: _forged(k, extra="x"), "extra"),
        (lambda k: "not json", "not a DSSE envelope"),
        (lambda k: "[1]", "not a DSSE envelope"),
        (lambda k: json.dumps({"payload": "e30=", "payloadType": "x", "signatures": []}), "not user:alice's"),
    ],
)
def test_a_signature_that_does_not_cover_this_decision_by_this_key_is_refused(
    cfg: ApproveConfig, alice_key: ec.EllipticCurvePrivateKey, signed: Any, why: str
) -> None:
    verdict = check_answer(cfg, REQUEST, _answer("alice", digest=DIGEST, signed=signed(alice_key)))
    assert verdict.refused is not None and why in verdict.refused, verdict.refused


def _other() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_approvers_are_identities_like_actors(tmp_path: Path, alice_key: ec.EllipticCurvePrivateKey) -> None:
    key = _write_public(alice_key, tmp_path / "a.pem")
    cfg = ApproveConfig(
        mode="human", approvers=["alice", "user:alice", "service:ci"], approver_keys={"alice": key}
    )
    assert cfg.approvers == ["user:alice", "service:ci"] and cfg.approver_keys == {"user:alice": key}


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"mode": "human"}, "mode human needs approve.approvers"),
        ({"approvers": ["alice", " "]}, "an approver's name is empty"),
        ({"approvers": ["alice"], "approver_keys": {"alice": "missing.pem"}}, "cannot read public key"),
        ({"approvers": ["alice"], "approver_keys": {"alice": "not-a-key.pem"}}, "cannot read public key"),
        (
            {"approvers": ["alice"], "approver_keys": {"bob": "bob.pem"}},
            "names user:bob, not in approve.approvers",
        ),
    ],
)
def test_an_approval_policy_that_cannot_work_is_a_config_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    alice_key: ec.EllipticCurvePrivateKey,
    fields: dict[str, Any],
    why: str,
) -> None:
    from attestflow.config import load_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-a-key.pem").write_text("hello\n")
    _write_public(alice_key, tmp_path / "bob.pem")
    root = Path(__file__).resolve().parents[2]
    with pytest.raises(ConfigError, match=why) as refused:
        load_config(root / "configs/release.yaml", [f"approve={json.dumps(fields)}"])
    assert "\n" not in str(refused.value)


def test_a_policy_that_sends_first_releases_to_a_person_needs_someone_to_approve(cfg: ApproveConfig) -> None:
    root = Path(__file__).resolve().parents[2]
    from attestflow.policy import load_policy

    policy: GatePolicy = load_policy(root / "configs/gates.yaml")
    strict = policy.model_copy(update={"baseline": BaselinePolicy(first_release="require_approval")})
    check_approvers(ApproveConfig(), policy)
    check_approvers(cfg, strict)
    with pytest.raises(ConfigError, match=r"require_approval needs approve\.approvers"):
        check_approvers(ApproveConfig(), strict)


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Answer]]:
    """Answers the (mocked) pause hands the approval loop in turn; outcomes go nowhere."""
    import flows.approval as approval

    queue: list[Answer] = []
    outcomes: list[tuple[str, bool, Any]] = []
    monkeypatch.setattr(approval, "publish_request", lambda request: None)

    def publish(*outcome: Any) -> bool:
        outcomes.append(outcome)
        return True

    monkeypatch.setattr(approval, "publish_outcome", publish)
    monkeypatch.setattr(approval, "_wait_for_answer", lambda form, timeout, key, wait: queue.pop(0))
    yield queue
    assert not queue, "every answer was read"


def test_each_refused_answer_is_audited_and_the_flow_keeps_waiting_until_one_counts(
    tmp_path: Path, cfg: ApproveConfig, alice_key: ec.EllipticCurvePrivateKey, answers: list[Answer]
) -> None:
    from flows.approval import approve

    other = sign_answer(REQUEST, True, "user:alice", "gates and lineage checked", _other())
    refused = [
        _answer("mallory"),
        _answer("scheduler"),
        _answer("bob", digest="f" * 64),
        _answer(""),
        _answer("bob", reason=""),
        _answer("alice", digest=DIGEST, signed=other),
    ]
    good = sign_answer(REQUEST, True, "user:alice", "gates and lineage checked", alice_key)
    answers.extend([*refused, _answer("alice", digest=DIGEST, signed=good)])
    audit = AuditLog.of(tmp_path)
    record = approve(cfg, REQUEST, audit)
    assert record.approved and record.approver == "user:alice" and record.mode == "human"
    assert record.approver_key_id == key_id(alice_key.public_key())
    assert record.approver_envelope == json.loads(good)
    entries = audit.entries()
    said_no = [e for e in entries if e["event"] == "approval_refused"]
    assert [e["actor"] for e in said_no] == [
        "user:mallory",
        "user:scheduler",
        "user:bob",
        "user:unknown",
        "user:bob",
        "user:alice",
    ]
    assert all(e["details"]["why"] and e["version"] == "3" for e in said_no)
    assert entries[-1]["event"] == "approval" and entries[-1]["actor"] == "user:alice"
    assert entries[-1]["details"]["approver_key_id"] == record.approver_key_id


def test_a_first_release_under_require_approval_waits_for_a_person_even_in_auto_mode(
    tmp_path: Path, answers: list[Answer]
) -> None:
    from flows.approval import approve

    answers.append(_answer("bob"))
    cfg = ApproveConfig(approvers=["bob"])
    audit = AuditLog.of(tmp_path)
    assert approve(cfg, REQUEST, audit).approver == "policy:auto", "auto when no person is required"
    record = approve(cfg, REQUEST, audit, human=True)
    assert record.approved and record.approver == "user:bob" and record.mode == "human"


def test_the_cli_waits_for_the_flows_outcome_of_its_own_pause_and_gives_up_at_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import prefect.input

    from attestflow.approval_channel import wait_for_outcome

    published = {"approval-2-outcome": {"accepted": False, "refused": "no reason given"}}
    monkeypatch.setattr(prefect.input, "read_flow_run_input", lambda key, run_id: published.get(key))
    assert wait_for_outcome(UUID(int=1), "approval-2", 1) == published["approval-2-outcome"]
    assert wait_for_outcome(UUID(int=1), "approval-1", 1) is None
