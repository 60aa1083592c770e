"""Approvals by several people (``approve.required``): distinct approvers counted, each refusal audited,
and a signed approval whose list of approvers bears out the count it claims."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from attestflow.approval import Answer, ApprovalRequest
from attestflow.audit import AuditLog
from attestflow.keys import KeyPair, ensure_keypair
from attestflow.outcomes import ApprovalRecord
from attestflow.records import Invocation
from attestflow.settings import ApproveConfig
from tests.code.test_evidence import Bundle

DIGEST = "cd" * 32
REQUEST = ApprovalRequest("credit-prod", "4", DIGEST, "run-9", "user:scheduler")
TWO = ApproveConfig(mode="human", approvers=["alice", "bob", "carol", "scheduler"], required=2, timeout_s=2)


def _answer(approver: str, approve: bool = True, **changes: Any) -> Answer:
    return replace(Answer(approve, approver, f"{approver} checked the gates", DIGEST[:16]), **changes)


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Answer]]:
    """Answers the (mocked) pause hands the approval loop in turn; once none is left, the wait times out."""
    import flows.approval as approval

    queue: list[Answer] = []
    monkeypatch.setattr(approval, "publish_request", lambda request: None)
    monkeypatch.setattr(approval, "publish_outcome", lambda *outcome: True)

    # The loop's clock: it moves only when a wait runs out, so a loaded machine cannot time a test out early.
    clock = [0.0]

    def wait(form: Any, timeout: int, key: str, how: str) -> Answer | None:
        if queue:
            return queue.pop(0)
        clock[0] += timeout
        return None

    monkeypatch.setattr(approval, "_wait_for_answer", wait)
    monkeypatch.setattr(approval, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    yield queue
    assert not queue, "every answer was read"


def _events(audit: AuditLog) -> list[tuple[str, str]]:
    return [(e["event"], e["actor"]) for e in audit.entries()]


def test_two_distinct_approvers_approve_and_both_are_named(tmp_path: Path, answers: list[Answer]) -> None:
    from flows.approval import approve

    answers.extend([_answer("alice"), _answer("bob")])
    audit = AuditLog.of(tmp_path)
    record = approve(TWO, REQUEST, audit)
    assert record.approved and record.approver == "user:bob"
    assert record.approvers == ("user:alice", "user:bob") and record.required == 2
    assert _events(audit) == [("approval_counted", "user:alice"), ("approval", "user:bob")]
    assert audit.entries()[-1]["details"]["count"] == "2 of 2"


def test_one_approval_then_the_timeout_is_a_rejection_audited_with_the_count(
    tmp_path: Path, answers: list[Answer]
) -> None:
    from flows.approval import approve

    answers.append(_answer("alice"))
    audit = AuditLog.of(tmp_path)
    record = approve(TWO, REQUEST, audit)
    assert not record.approved and record.approver == "policy:timeout"
    assert record.reason.startswith("1 of 2 approvals") and record.approvers == ("user:alice",)
    last = audit.entries()[-1]
    assert (last["event"], last["actor"], last["details"]["why"]) == (
        "rejection",
        "policy:timeout",
        "1 of 2 approvals",
    )
    assert _events(audit) == [("approval_counted", "user:alice"), ("rejection", "policy:timeout")]
    assert (last["model"], last["version"]) == ("credit-prod", "4")
    assert last["details"]["approvers"] == ["user:alice"] and last["details"]["digest"] == DIGEST


def test_the_same_approver_twice_self_approval_and_an_unlisted_approver_are_refused_and_audited(
    tmp_path: Path, answers: list[Answer]
) -> None:
    from flows.approval import approve

    answers.extend(
        [_answer("alice"), _answer("alice"), _answer("scheduler"), _answer("mallory"), _answer("carol")]
    )
    audit = AuditLog.of(tmp_path)
    record = approve(TWO, REQUEST, audit)
    assert record.approved and record.approvers == ("user:alice", "user:carol")
    refused = [e for e in audit.entries() if e["event"] == "approval_refused"]
    assert [e["actor"] for e in refused] == ["user:alice", "user:scheduler", "user:mallory"]
    assert "already approved" in refused[0]["details"]["why"]
    assert "triggered this release" in refused[1]["details"]["why"]
    assert "not in approve.approvers" in refused[2]["details"]["why"]
    assert _events(audit) == [
        ("approval_counted", "user:alice"),
        ("approval_refused", "user:alice"),
        ("approval_refused", "user:scheduler"),
        ("approval_refused", "user:mallory"),
        ("approval", "user:carol"),
    ]
    for entry in refused:
        assert (entry["model"], entry["version"]) == ("credit-prod", "4")
        assert entry["details"]["decision"] == "approve" and entry["details"]["digest"] == DIGEST
    assert audit.verify()[0]


def test_a_rejection_by_an_allowed_approver_ends_the_wait_whatever_was_approved_before(
    tmp_path: Path, answers: list[Answer]
) -> None:
    from flows.approval import approve

    answers.extend([_answer("alice"), _answer("bob", approve=False)])
    audit = AuditLog.of(tmp_path)
    record = approve(TWO, REQUEST, audit)
    assert not record.approved and record.approver == "user:bob"
    assert _events(audit) == [("approval_counted", "user:alice"), ("rejection", "user:bob")]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return ensure_keypair(tmp_path_factory.mktemp("keys"))


def _signed_approval(bundle: Bundle, **predicate: Any) -> None:
    at = bundle.tick()
    record = ApprovalRecord(
        True,
        "user:bob",
        "ok",
        bundle.bundle.value,
        at,
        "human",
        approvers=("user:alice", "user:bob"),
        required=2,
    )
    from attestflow.evidence import approval_statement
    from attestflow.lineage import CodeRevision

    invocation = Invocation("c.yaml", [], "run", at, "user:ci", CodeRevision("abc", False))
    stmt = approval_statement(record, bundle.registered, invocation)
    stmt["predicate"].update(predicate)
    bundle.add(bundle.verdict())
    bundle.add(stmt)


def test_a_signed_approval_by_two_approvers_holds_and_names_both(tmp_path: Path, keys: KeyPair) -> None:
    bundle = Bundle(tmp_path / "model", keys)
    _signed_approval(bundle)
    ok, detail = bundle.checks()["approval"]
    assert ok and "user:alice, user:bob" in detail, detail


@pytest.mark.parametrize(
    ("predicate", "why"),
    [
        ({"required": 3}, "claims 3 approvals but lists 2 approvers"),
        ({"approvers": ["user:bob", "user:bob"]}, "lists an approver twice"),
        ({"approvers": ["user:alice", "user:carol"]}, "its approver user:bob is not among its approvers"),
        ({"approvers": "user:bob"}, "not a list of names"),
    ],
)
def test_a_signed_approval_whose_approvers_do_not_bear_out_its_count_fails(
    tmp_path: Path, keys: KeyPair, predicate: dict[str, Any], why: str
) -> None:
    bundle = Bundle(tmp_path / "model", keys)
    _signed_approval(bundle, **predicate)
    ok, detail = bundle.checks()["approval"]
    assert not ok and why in detail, detail
