"""Reading a folder of signed statements: each file verified on its own, sorted into the check it belongs to.

`attestflow.evidence_check` judges what is read here; the reading is one routine for every
folder of statements a version carries (``evidence/`` and each ``environments/<env>/``), so
that a file that does not verify, is not a statement attestflow reads, or is named by no
statement is refused the same way wherever it lies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from attestflow.digests import file_digest
from attestflow.dsse import EnvelopeError, dsse_verify
from attestflow.evidence import (
    APPROVAL,
    CANARY,
    ENVELOPE,
    EVIDENCE_DIR,
    KINDS,
    MODEL_CARD,
    PROMOTION,
    VSA,
    named_by,
    parse_time,
    statement_time,
)
from attestflow.keys import load_public_key

MAX_EVIDENCE_BYTES = 1 << 20
GATE_CHECK, APPROVAL_CHECK, PROMOTION_CHECK = "gate verdict", "approval", "promotion"
CHECK_OF = {VSA: GATE_CHECK, APPROVAL: APPROVAL_CHECK, CANARY: APPROVAL_CHECK, MODEL_CARD: GATE_CHECK}
"""Predicate type -> the check its statements belong to, for ``evidence/`` (no promotion there); the model
card, which carries the gate decisions, belongs to the gate verdict's check but is never read as a verdict."""
PROMOTED_CHECK_OF = {**CHECK_OF, PROMOTION: PROMOTION_CHECK}
"""The same for an environment's folder, which also holds the promotion statement."""


@dataclass(frozen=True)
class Statement:
    """A statement from the evidence folder whose signature verified."""

    path: str
    predicate_type: str
    subject: dict[str, str]
    """Subject name -> its SHA-256."""
    predicate: dict[str, Any]
    time: datetime


@dataclass
class Evidence:
    """The folder's statements that verified, and what is wrong with the others, by check."""

    statements: list[Statement] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)
    attachments: dict[str, Path] = field(default_factory=dict)
    """Files beside the statements that some statement names by digest (``gates.json``), by path."""

    def refuse(self, check: str, problem: str) -> None:
        self.problems.setdefault(check, []).append(problem)

    def of(self, predicate_type: str) -> list[Statement]:
        """Statements of one type, newest last."""
        return sorted(
            (s for s in self.statements if s.predicate_type == predicate_type), key=lambda s: s.time
        )


def check_for(file_name: str, check_of: dict[str, str] = CHECK_OF) -> str:
    """The check a file of the evidence folder belongs to, by its kind prefix (unknown: the gate verdict)."""
    return check_of.get(KINDS.get(file_name.split("-", 1)[0], ""), GATE_CHECK)


def read_evidence(
    folder: Path, public_key: Path, under: str = EVIDENCE_DIR, check_of: dict[str, str] = CHECK_OF
) -> Evidence:
    """Verify every file of the folder `under` with the trusted key (never following links)."""
    found = Evidence()
    root = folder / under
    if not root.is_dir() or root.is_symlink():
        return found
    key = load_public_key(public_key)
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        check = check_for(path.name, check_of)
        if path.is_symlink() or not path.is_file():
            found.refuse(check, f"{rel} is not a regular file")
            continue
        if path.stat().st_size > MAX_EVIDENCE_BYTES:
            found.refuse(check, f"{rel} is larger than {MAX_EVIDENCE_BYTES} bytes")
            continue
        if not path.name.endswith(ENVELOPE):
            found.attachments[rel] = path
            continue
        try:
            stmt = dsse_verify(json.loads(path.read_bytes()), key)
            parsed = parse_statement(rel, stmt, check_of)
        except (EnvelopeError, ValueError, KeyError, TypeError, AttributeError) as e:
            found.refuse(check, f"{rel}: {e}")
            continue
        if KINDS.get(path.name.split("-", 1)[0]) != parsed.predicate_type:
            found.refuse(check, f"{rel}: a {parsed.predicate_type} statement under another kind's name")
            continue
        found.statements.append(parsed)
    named = {named_file(s)[0] for s in found.statements if named_by(s.predicate_type, s.predicate)}
    for rel in sorted(found.attachments.keys() - named):
        found.refuse(check_for(Path(rel).name, check_of), f"{rel} is not named by any signed statement")
    return found


def named_file(s: Statement) -> tuple[str, str]:
    """(path, SHA-256) of the file a statement names (`attestflow.evidence.named_by`)."""
    named = named_by(s.predicate_type, s.predicate)
    return str(named.get("uri")), str(named.get("digest", {}).get("sha256"))


def check_named(ev: Evidence, s: Statement) -> str | None:
    """Why the file a statement names (a verdict's ``gates.json``, ...) is not the one beside it, or None."""
    rel, digest = named_file(s)
    path = ev.attachments.get(rel)
    if path is None:
        return f"{rel}, named by {s.path}, is missing"
    if file_digest(path).value != digest:
        return f"{rel} does not match the SHA-256 signed in {s.path}"
    return None


def parse_statement(rel: str, stmt: dict[str, Any], check_of: dict[str, str]) -> Statement:
    predicate_type = stmt.get("predicateType")
    if predicate_type not in check_of:
        raise ValueError(f"predicate type {predicate_type!r} is not evidence attestflow reads")
    subject = {str(s["name"]): str(s["digest"]["sha256"]) for s in stmt["subject"]}
    return Statement(
        rel, str(predicate_type), subject, dict(stmt["predicate"]), parse_time(statement_time(stmt))
    )


def evidence_files(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every plain file under ``evidence/`` (a link or special file: its kind)."""
    root = folder / EVIDENCE_DIR
    if not root.is_dir() or root.is_symlink():
        return {}
    return {
        p.relative_to(folder).as_posix(): file_digest(p).value
        if p.is_file() and not p.is_symlink()
        else "not a plain file"
        for p in sorted(root.rglob("*"))
        if p.is_symlink() or not p.is_dir()
    }
