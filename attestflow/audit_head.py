"""The audit log's head, signed: which entry is the newest, under the workspace's release key.

A hash chain alone proves only that the lines agree with each other: whoever can write the
log can rewrite it from any line on, write a matching head file and re-tag the registry. The
head file therefore carries a DSSE-signed in-toto statement whose subject is the SHA-256 of
the newest line and whose predicate is that line's number. Only a holder of the release key
can write a head that verifies, so a rewritten log, a line appended after the head, or a
deleted head file is caught. An older signed head put back together with a truncated log
verifies by itself; the registry anchors (``audit_head`` tags) catch that once a move was made.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestflow.dsse import EnvelopeError, dsse_verify, statement
from attestflow.keys import load_public_key

if TYPE_CHECKING:
    from attestflow.signers import Signer

PREDICATE_TYPE = "https://attestflow.dev/audit-head/v1"


class HeadError(Exception):
    """A head file that is not signed by the trusted key, or says something its signature does not."""


def signed_head(log_name: str, seq: int, sha256: str, signer: Signer) -> dict[str, Any]:
    """The head file's content: entry `seq` (line hash `sha256`) is the newest, signed by `signer`."""
    stmt = statement([{"name": log_name, "digest": {"sha256": sha256}}], PREDICATE_TYPE, {"seq": seq})
    return {"seq": seq, "sha256": sha256, "envelope": signer.sign_dsse(stmt)}


def signed_position(head: dict[str, Any], public_key: Path) -> tuple[int, str]:
    """(seq, sha256) that the head's signature covers; `HeadError` unless it verifies and agrees."""
    envelope = head.get("envelope")
    if not isinstance(envelope, dict):
        raise HeadError("the audit head is not signed")
    try:
        stmt = dsse_verify(envelope, load_public_key(public_key))
    except EnvelopeError as e:
        raise HeadError(f"the audit head's signature: {e}") from None
    subjects = stmt.get("subject")
    predicate = stmt.get("predicate")
    if (
        stmt.get("predicateType") != PREDICATE_TYPE
        or not isinstance(subjects, list)
        or len(subjects) != 1
        or not isinstance(subjects[0], dict)
        or not isinstance(predicate, dict)
    ):
        raise HeadError("the audit head's signed statement is not an audit head")
    seq, digest = predicate.get("seq"), (subjects[0].get("digest") or {}).get("sha256")
    if not isinstance(seq, int) or not isinstance(digest, str):
        raise HeadError("the audit head's signed statement names no entry")
    if (head.get("seq"), head.get("sha256")) != (seq, digest):
        raise HeadError(
            f"the head file names entry {head.get('seq')} ({str(head.get('sha256'))[:12]}) but its"
            f" signature covers entry {seq} ({digest[:12]})"
        )
    return seq, digest
