"""The one evidence check every alias move, warm start and `attestflow verify` runs on a model folder.

Verified signatures and provenance say what a model is; they do not say that it passed its
gates or that anyone approved it. `release_evidence` reads the signed statements in the
folder's `EVIDENCE_DIR` and requires, with the trusted public key:

- ``gates``: a verification summary about exactly this ``model.onnx`` and this model, whose
  newest verdict (under the given gate policy, where one is given) is PASSED, with the
  ``gates.json`` it names beside it, unchanged;
- ``approval``: an approval of exactly this release bundle whose newest decision is
  "approved", and no FAILED canary verdict on this ``model.onnx`` newer than that approval.

Every file in the folder is verified on its own: one that does not verify with the trusted
key, that is about another model, or that no signed statement names, fails the check it
belongs to (a forged, copied or added file is never skipped). `verify_release` adds these checks to `verify_bundle`'s.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from attestflow.approval import BUNDLE_SUBJECT
from attestflow.bundle import MODEL, PROVENANCE, bundle_digest, signed_files
from attestflow.digests import file_digest
from attestflow.dsse import EnvelopeError, dsse_verify
from attestflow.errors import BadInputError
from attestflow.evidence import (
    APPROVAL,
    CANARY,
    ENVELOPE,
    EVIDENCE_DIR,
    GATES_KEY,
    KINDS,
    VSA,
    parse_time,
    statement_time,
)
from attestflow.keys import load_public_key
from attestflow.verify import Check, Verification, verify_bundle

PROVENANCE_CHECKS = "provenance"
GATES = "gates"
APPROVED = "approval"
REQUIREMENTS = (PROVENANCE_CHECKS, GATES, APPROVED)
"""What `attestflow verify --require` can ask for; every alias move requires all of them."""
MAX_EVIDENCE_BYTES = 1 << 20
GATE_CHECK, APPROVAL_CHECK = "gate verdict", "approval"
_CHECK_OF = {VSA: GATE_CHECK, APPROVAL: APPROVAL_CHECK, CANARY: APPROVAL_CHECK}


@dataclass(frozen=True)
class EnvTrust:
    """The keys that verify a version promoted into an environment: its own, and its source's."""

    environment: str
    key: Path
    source_keys: tuple[Path, ...]


def parse_requirements(text: str) -> tuple[str, ...]:
    """``provenance,gates,approval`` (any subset, comma-separated) as a tuple; anything else is bad input."""
    asked = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in asked if p not in REQUIREMENTS]
    if unknown or not asked:
        raise BadInputError(f"--require takes a comma-separated subset of {','.join(REQUIREMENTS)}")
    return asked


@dataclass(frozen=True)
class _Statement:
    """A statement from the evidence folder whose signature verified."""

    path: str
    predicate_type: str
    subject: dict[str, str]
    """Subject name -> its SHA-256."""
    predicate: dict[str, Any]
    time: datetime


@dataclass
class _Evidence:
    """The folder's statements that verified, and what is wrong with the others, by check."""

    statements: list[_Statement] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)
    attachments: dict[str, Path] = field(default_factory=dict)
    """Files beside the statements that some statement names by digest (``gates.json``), by path."""

    def refuse(self, check: str, problem: str) -> None:
        self.problems.setdefault(check, []).append(problem)

    def of(self, predicate_type: str) -> list[_Statement]:
        """Statements of one type, newest last."""
        return sorted(
            (s for s in self.statements if s.predicate_type == predicate_type), key=lambda s: s.time
        )


def _check_for(file_name: str) -> str:
    """The check a file of the evidence folder belongs to, by its kind prefix (unknown: the gate verdict)."""
    return _CHECK_OF.get(KINDS.get(file_name.split("-", 1)[0], ""), GATE_CHECK)


def _read(folder: Path, public_key: Path) -> _Evidence:
    """Verify every file of the evidence folder with the trusted key (never following links)."""
    found = _Evidence()
    root = folder / EVIDENCE_DIR
    if not root.is_dir() or root.is_symlink():
        return found
    key = load_public_key(public_key)
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        check = _check_for(path.name)
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
            parsed = _parse(rel, stmt)
        except (EnvelopeError, ValueError, KeyError, TypeError, AttributeError) as e:
            found.refuse(check, f"{rel}: {e}")
            continue
        if KINDS.get(path.name.split("-", 1)[0]) != parsed.predicate_type:
            found.refuse(check, f"{rel}: a {parsed.predicate_type} statement under another kind's name")
            continue
        found.statements.append(parsed)
    named = {_named(s)[0] for s in found.statements if s.predicate_type == VSA}
    for rel in sorted(found.attachments.keys() - named):
        found.refuse(_check_for(Path(rel).name), f"{rel} is not named by any signed statement")
    return found


def _named(s: _Statement) -> tuple[str, str]:
    """(path, SHA-256) of the ``gates.json`` a verification summary names."""
    gates_json = s.predicate.get(GATES_KEY, {}).get("gatesJson", {})
    return str(gates_json.get("uri")), str(gates_json.get("digest", {}).get("sha256"))


def _check_named(ev: _Evidence, s: _Statement) -> str | None:
    """Why the ``gates.json`` a verification summary names is not the one beside it, or None."""
    rel, digest = _named(s)
    path = ev.attachments.get(rel)
    if path is None:
        return f"{rel}, named by {s.path}, is missing"
    if file_digest(path).value != digest:
        return f"{rel} does not match the SHA-256 signed in {s.path}"
    return None


def _parse(rel: str, stmt: dict[str, Any]) -> _Statement:
    predicate_type = stmt.get("predicateType")
    if predicate_type not in _CHECK_OF:
        raise ValueError(f"predicate type {predicate_type!r} is not evidence attestflow reads")
    subject = {str(s["name"]): str(s["digest"]["sha256"]) for s in stmt["subject"]}
    return _Statement(
        rel, str(predicate_type), subject, dict(stmt["predicate"]), parse_time(statement_time(stmt))
    )


def _about(s: _Statement) -> dict[str, Any]:
    """The model a statement names (``{name, version}``)."""
    model = (
        s.predicate.get(GATES_KEY, {}).get("model") if s.predicate_type == VSA else s.predicate.get("model")
    )
    return dict(model or {})


def _foreign(s: _Statement, subject: str, digest: str, model_name: str, version: str | None) -> str | None:
    """Why a verified statement is not about this model, or None when it is."""
    if s.subject != {subject: digest}:
        return f"{s.path} is about another {subject} than the one present"
    model = _about(s)
    if model.get("name") != model_name:
        return f"{s.path} is about model {model.get('name')!r}, not {model_name!r}"
    if version is not None and str(model.get("version")) != version:
        return f"{s.path} is about version {model.get('version')}, not {version}"
    return None


def _gate_verdict(
    ev: _Evidence, onnx: str, model_name: str, version: str | None, policy_digest: str | None
) -> Check:
    summaries = ev.of(VSA)
    problems = ev.problems.get(GATE_CHECK, []) + [
        why
        for s in summaries
        if (why := _foreign(s, MODEL, onnx, model_name, version) or _check_named(ev, s))
    ]
    if problems:
        return Check(GATE_CHECK, False, "; ".join(problems))
    if policy_digest is not None:
        policy = policy_digest.removeprefix("sha256:")
        summaries = [
            s for s in summaries if s.predicate.get("policy", {}).get("digest", {}).get("sha256") == policy
        ]
        if not summaries:
            return Check(
                GATE_CHECK, False, f"no signed verification summary under gate policy sha256:{policy[:12]}"
            )
    if not summaries:
        return Check(GATE_CHECK, False, f"no signed verification summary (gate verdict) for this {MODEL}")
    newest = summaries[-1]
    result = newest.predicate.get("verificationResult")
    failed = [
        f"{g.get('gate')}/{g.get('metric')}"
        for g in newest.predicate.get(GATES_KEY, {}).get("gates", [])
        if not g.get("passed")
    ]
    if result != "PASSED":
        said = f" (failed: {', '.join(failed)})" if failed else ""
        return Check(GATE_CHECK, False, f"the signed gate verdict is {result}{said}, {newest.path}")
    policy = newest.predicate.get("policy", {}).get("digest", {}).get("sha256", "")
    return Check(
        GATE_CHECK, True, f"signed verification summary PASSED under gate policy sha256:{policy[:12]}"
    )


def _approval(ev: _Evidence, onnx: str, bundle: str, model_name: str, version: str | None) -> Check:
    approvals, canaries = ev.of(APPROVAL), ev.of(CANARY)
    problems = (
        ev.problems.get(APPROVAL_CHECK, [])
        + [why for s in approvals if (why := _foreign(s, BUNDLE_SUBJECT, bundle, model_name, version))]
        + [why for s in canaries if (why := _foreign(s, MODEL, onnx, model_name, version))]
    )
    if problems:
        return Check(APPROVAL_CHECK, False, "; ".join(problems))
    if not approvals:
        return Check(APPROVAL_CHECK, False, f"no signed approval of release bundle sha256:{bundle[:12]}")
    newest = approvals[-1]
    p = newest.predicate
    if p.get("decision") != "approved":
        return Check(
            APPROVAL_CHECK,
            False,
            f"the latest signed decision is {p.get('decision')} by {p.get('approver')}: {p.get('reason')}",
        )
    quorum = _quorum_problem(p)
    if quorum is not None:
        return Check(APPROVAL_CHECK, False, f"{newest.path}: {quorum}")
    rejected = [c for c in canaries if c.predicate.get("result") != "PASSED" and c.time >= newest.time]
    if rejected:
        c = rejected[-1]
        return Check(
            APPROVAL_CHECK,
            False,
            f"the canary rejected this {MODEL} at {c.time.isoformat(timespec='seconds')} after its "
            f"approval at {p.get('time')} ({'; '.join(c.predicate.get('reasons', []))}); it needs a new approval",
        )
    by = ", ".join(p.get("approvers") or [str(p.get("approver"))])
    return Check(APPROVAL_CHECK, True, f"approved by {by} ({p.get('mode')}) at {p.get('time')}, signed")


def _quorum_problem(p: dict[str, Any]) -> str | None:
    """Why an approval's list of approvers does not bear out the count it claims, or None.

    A statement from before approvals were counted names one ``approver`` and no list: it counts as one.
    """
    if "approvers" not in p:
        return None
    names, required = p["approvers"], p.get("required", 1)
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        return "its approvers are not a list of names"
    if len(set(names)) != len(names):
        return f"it lists an approver twice ({', '.join(names)})"
    if not isinstance(required, int) or isinstance(required, bool) or required < 1 or len(names) != required:
        return f"it claims {required!r} approvals but lists {len(names)} approvers ({', '.join(names)})"
    if p.get("approver") not in names:
        return f"its approver {p.get('approver')} is not among its approvers"
    return None


def release_evidence(
    folder: Path,
    public_key: Path,
    *,
    model_name: str,
    version: str | None = None,
    policy_digest: str | None = None,
    require: Collection[str] = (GATES, APPROVED),
) -> list[Check]:
    """The ``gate verdict`` and ``approval`` checks (those in `require`) on a model folder."""
    ev = _read(folder, public_key)
    onnx = file_digest(folder / MODEL).value if (folder / MODEL).is_file() else "missing"
    checks = []
    if GATES in require:
        checks.append(_gate_verdict(ev, onnx, model_name, version, policy_digest))
    if APPROVED in require:
        checks.append(_approval(ev, onnx, bundle_digest(signed_files(folder)).value, model_name, version))
    return checks


def built_model_name(folder: Path, public_key: Path) -> str | None:
    """The model name the folder's signed provenance was built for; None if it does not verify."""
    try:
        stmt = dsse_verify(json.loads((folder / PROVENANCE).read_text()), load_public_key(public_key))
        return str(stmt["predicate"]["buildDefinition"]["externalParameters"]["model_name"])
    except (OSError, EnvelopeError, ValueError, KeyError, TypeError):
        return None


def verify_release(
    folder: Path,
    public_key: Path,
    *,
    require: Iterable[str] = REQUIREMENTS,
    tags: dict[str, str] | None = None,
    check_data: bool = True,
    target: str = "",
    model_name: str | None = None,
    version: str | None = None,
    policy_digest: str | None = None,
) -> Verification:
    """`verify_bundle`'s checks (``provenance``) and the evidence checks, as `require` asks."""
    require = tuple(require)
    checks: list[Check] = []
    if PROVENANCE_CHECKS in require:
        checks += verify_bundle(
            folder, public_key, tags=tags, check_data=check_data, model_name=model_name
        ).checks
    if GATES in require or APPROVED in require:
        name = model_name or built_model_name(folder, public_key)
        if name is None:
            why = "no verified provenance names the model the evidence is about"
            checks += [
                Check(c, False, why)
                for r, c in ((GATES, GATE_CHECK), (APPROVED, APPROVAL_CHECK))
                if r in require
            ]
        else:
            checks += release_evidence(
                folder,
                public_key,
                model_name=name,
                version=version,
                policy_digest=policy_digest,
                require=require,
            )
    return Verification(target or str(folder), checks)
