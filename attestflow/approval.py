"""The approval rules: who may decide a promotion, and what a signed decision must say.

A free-text approver name proves nothing: anyone can type ``alice``, including whoever
triggered the release. So in ``human`` mode a decision counts only when it names the bundle
digest the release is waiting on, comes from someone in ``approve.approvers``, is not the
triggerer approving their own run (unless ``approve.allow_self_approval``), gives a reason,
and, for an approver with a key in ``approve.approver_keys``, carries a DSSE envelope over an
approval statement for exactly this bundle, decision, approver, reason and run, signed with
that key. `check_answer` is that rule, pure and without Prefect, so the flow and the tests
share it. A rejection needs the same, except that the triggerer may withdraw their own run.

The approval statement is an in-toto Statement v1 whose predicate type is this project's
`APPROVAL_PREDICATE`; its one subject is the release bundle's SHA-256.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from attestflow.dsse import EnvelopeError, dsse_sign, dsse_verify, statement
from attestflow.errors import BadInputError, ConfigError
from attestflow.keys import key_id, load_public_key
from attestflow.lineage import actor
from attestflow.policy import GatePolicy
from attestflow.settings import ApproveConfig

APPROVAL_PREDICATE = "https://attestflow.dev/approval/v1"
BUNDLE_SUBJECT = "release-bundle"
MIN_DIGEST_PREFIX = 12


@dataclass(frozen=True)
class ApprovalRequest:
    """What a release waiting for approval asks a person to decide on."""

    model_name: str
    version: str
    digest: str
    """The release bundle's full SHA-256 (hex)."""
    flow_run_id: str
    triggered_by: str
    """The actor who started the release (``kind:name``)."""

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ApprovalRequest:
        return cls(**{k: str(raw[k]) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Answer:
    """A person's answer as the flow received it (the fields of the Prefect form)."""

    approve: bool
    approver: str
    reason: str
    digest: str
    signed: str = ""
    """The approver's DSSE envelope over the approval statement, as JSON; empty when unsigned."""


@dataclass(frozen=True)
class Verdict:
    """An answer checked against the request and the approval policy."""

    approver: str
    """The approver's identity (``kind:name``), ``user:unknown`` when none was given."""
    refused: str | None
    """Why the answer does not count; None when it does."""
    key_id: str | None = None
    """Id of the approver's key whose signature verified, when the answer was signed."""
    envelope: dict[str, Any] | None = None


def utc_now() -> str:
    """The current time, ISO 8601 to the second, in UTC."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def decision_word(approve: bool) -> str:
    return "approved" if approve else "rejected"


def digest_matches(given: str, expected: str) -> bool:
    """Whether an approver's digest names `expected` (whole, or a long enough prefix)."""
    given = given.strip().removeprefix("sha256:").lower()
    return len(given) >= MIN_DIGEST_PREFIX and expected.startswith(given)


def approval_statement(
    request: ApprovalRequest, approve: bool, approver: str, reason: str, at: str, mode: str
) -> dict[str, Any]:
    """The in-toto statement of one decision about the release bundle of `request`."""
    predicate = {
        "decision": decision_word(approve),
        "approver": approver,
        "reason": reason,
        "time": at,
        "mode": mode,
        "model": {"name": request.model_name, "version": request.version},
        "flowRunId": request.flow_run_id,
    }
    subject = [{"name": BUNDLE_SUBJECT, "digest": {"sha256": request.digest}}]
    return statement(subject, APPROVAL_PREDICATE, predicate)


def sign_answer(
    request: ApprovalRequest,
    approve: bool,
    approver: str,
    reason: str,
    private_key: ec.EllipticCurvePrivateKey,
) -> str:
    """The approver's signed human decision on `request`, as the DSSE envelope's JSON."""
    stmt = approval_statement(request, approve, approver, reason, utc_now(), "human")
    return json.dumps(dsse_sign(stmt, private_key), sort_keys=True)


def check_approvers(cfg: ApproveConfig, policy: GatePolicy) -> None:
    """Refuse a gate policy that may send a first release to a person when nobody may approve it."""
    if policy.baseline.first_release == "require_approval" and not cfg.approvers:
        raise ConfigError(
            "the gate policy's first_release: require_approval needs approve.approvers "
            "(the people who may approve a first release)"
        )


def check_answer(cfg: ApproveConfig, request: ApprovalRequest, answer: Answer) -> Verdict:
    """Whether `answer` decides `request` under the approval policy `cfg`, and if not, why."""
    name = answer.approver.strip()
    who = actor(name or "unknown")

    def refuse(why: str) -> Verdict:
        return Verdict(who, why)

    if not name:
        return refuse("no approver named")
    if not answer.reason.strip():
        return refuse("no reason given")
    if not digest_matches(answer.digest, request.digest):
        return refuse(f"digest {answer.digest.strip()[:16]!r} is not the bundle's ({request.digest[:16]}...)")
    if who not in cfg.approvers:
        return refuse(f"{who} is not in approve.approvers")
    if answer.approve and who == request.triggered_by and not cfg.allow_self_approval:
        return refuse(f"{who} triggered this release and may not approve it (approve.allow_self_approval)")
    key_path = cfg.approver_keys.get(who)
    if key_path is None:
        if answer.signed.strip():
            return refuse(f"{who} signed the decision but has no key in approve.approver_keys")
        return Verdict(who, None)
    try:
        public_key = load_public_key(key_path)
    except BadInputError as e:
        return refuse(str(e))
    return _check_signature(request, answer, who, public_key)


def _check_signature(
    request: ApprovalRequest, answer: Answer, who: str, public_key: ec.EllipticCurvePublicKey
) -> Verdict:
    """The verdict on a decision that must be signed by `public_key` (the approver's)."""
    if not answer.signed.strip():
        return Verdict(who, f"{who} must sign the decision with their key (attestflow approve --key)")
    try:
        envelope = json.loads(answer.signed)
    except ValueError:
        return Verdict(who, "the signed decision is not a DSSE envelope (not JSON)")
    if not isinstance(envelope, dict):
        return Verdict(who, "the signed decision is not a DSSE envelope")
    try:
        stmt = dsse_verify(envelope, public_key)
    except EnvelopeError as e:
        return Verdict(who, f"the signature is not {who}'s: {e}")
    at = stmt.get("predicate", {}).get("time") if isinstance(stmt.get("predicate"), dict) else None
    if not isinstance(at, str) or not at:
        return Verdict(who, "the signed approval statement has no time")
    want = approval_statement(request, answer.approve, who, answer.reason, at, "human")
    differ = sorted(
        {k for k in ("subject", "predicateType") if stmt.get(k) != want[k]}
        | {k for k, v in want["predicate"].items() if stmt["predicate"].get(k) != v}
        | {k for k in stmt["predicate"] if k not in want["predicate"]}
    )
    if differ:
        return Verdict(who, f"the signed statement is not this decision (differs in {', '.join(differ)})")
    return Verdict(who, None, key_id(public_key), envelope)
