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

A version promoted into another environment (`attestflow.env_promotion`) carries two sets of
evidence: the source environment's, unchanged, under ``evidence/`` (verified with one of the
keys the target trusts for its source, `EnvTrust.source_keys`), and the target's own under
``environments/<env>/``, signed with the target's key (`promoted_evidence`): a promotion
statement binding this ``model.onnx``, the source bundle and every source evidence file's
digest to this target version, the target's own model signature of the same files (which it
names by digest), and the target's gate verdict and approval, read by the same
`_gate_verdict` and `_approval` as the source's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from attestflow.approval import BUNDLE_SUBJECT
from attestflow.bundle import ENVIRONMENTS, MODEL, PROVENANCE, SIGNATURE, bundle_digest, signed_files
from attestflow.digests import file_digest
from attestflow.dsse import EnvelopeError, dsse_verify
from attestflow.errors import BadInputError
from attestflow.evidence import APPROVAL, CANARY, GATES_KEY, MODEL_CARD, PROMOTION, VSA
from attestflow.evidence_read import (
    APPROVAL_CHECK,
    GATE_CHECK,
    PROMOTED_CHECK_OF,
    PROMOTION_CHECK,
    Evidence,
    Statement,
    check_named,
    evidence_files,
    named_file,
    read_evidence,
)
from attestflow.keys import key_id, load_public_key
from attestflow.verify import Check, Verification, check_model_signature, verify_bundle

PROVENANCE_CHECKS = "provenance"
GATES = "gates"
APPROVED = "approval"
REQUIREMENTS = (PROVENANCE_CHECKS, GATES, APPROVED)
"""What `attestflow verify --require` can ask for; every alias move requires all of them."""
MODEL_SIGNATURE_CHECK = "model signature"


@dataclass(frozen=True)
class EnvTrust:
    """What a version promoted into `environment` is verified with."""

    environment: str
    key: Path
    """The environment's public key: its promotion statement, gate verdict, approval and canary."""
    source_keys: tuple[Path, ...]
    """Public keys accepted for the source environment's signature, provenance and ``evidence/``."""


def environment_dir(environment: str) -> str:
    """The folder of a version's artifacts holding what `environment` signed about it."""
    return f"{ENVIRONMENTS}/{environment}"


def environment_signature(environment: str) -> str:
    """Where `environment`'s own model-signing signature of a version's bundle lies (its promotion names it)."""
    return f"{environment_dir(environment)}/{Path(SIGNATURE).name}"


def parse_requirements(text: str) -> tuple[str, ...]:
    """``provenance,gates,approval`` (any subset, comma-separated) as a tuple; anything else is bad input."""
    asked = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in asked if p not in REQUIREMENTS]
    if unknown or not asked:
        raise BadInputError(f"--require takes a comma-separated subset of {','.join(REQUIREMENTS)}")
    return asked


def _about(s: Statement) -> dict[str, Any]:
    """The model a statement names (``{name, version}``)."""
    model = (
        s.predicate.get(GATES_KEY, {}).get("model") if s.predicate_type == VSA else s.predicate.get("model")
    )
    return dict(model or {})


def _foreign(s: Statement, subject: str, digest: str, model_name: str, version: str | None) -> str | None:
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
    ev: Evidence, onnx: str, model_name: str, version: str | None, policy_digest: str | None
) -> Check:
    summaries = ev.of(VSA)
    problems = ev.problems.get(GATE_CHECK, []) + [
        why
        for s in summaries + ev.of(MODEL_CARD)
        if (why := _foreign(s, MODEL, onnx, model_name, version) or check_named(ev, s))
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


def _approval(ev: Evidence, onnx: str, bundle: str, model_name: str, version: str | None) -> Check:
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
    ev = read_evidence(folder, public_key)
    onnx = file_digest(folder / MODEL).value if (folder / MODEL).is_file() else "missing"
    checks = []
    if GATES in require:
        checks.append(_gate_verdict(ev, onnx, model_name, version, policy_digest))
    if APPROVED in require:
        checks.append(_approval(ev, onnx, bundle_digest(signed_files(folder)).value, model_name, version))
    return checks


def _promotion(
    ev: Evidence, folder: Path, trust: EnvTrust, onnx: str, model_name: str | None, version: str | None
) -> tuple[Check, dict[str, Any] | None]:
    """The promotion check, and the source (``env``, ``model``, ``version``) of a statement about this target."""
    statements, env = ev.of(PROMOTION), trust.environment
    problems = list(ev.problems.get(PROMOTION_CHECK, []))
    for s in statements:
        to = s.predicate.get("target", {})
        if s.subject != {MODEL: onnx}:
            problems.append(f"{s.path} is about another {MODEL} than the one present")
        elif to.get("env") != env or (model_name is not None and to.get("model") != model_name):
            problems.append(
                f"{s.path} promotes into {to.get('env')}:{to.get('model')}, not {env}:{model_name}"
            )
        elif version is not None and str(to.get("version")) != version:
            problems.append(f"{s.path} is about version {to.get('version')}, not {version}")
    if problems:
        return Check(PROMOTION_CHECK, False, "; ".join(problems)), None
    if not statements:
        where = environment_dir(env)
        return Check(
            PROMOTION_CHECK, False, f"no promotion statement signed with {env}'s key in {where}/"
        ), None
    source = dict(statements[-1].predicate.get("source", {}))
    trusted = {key_id(load_public_key(k)) for k in trust.source_keys}
    changed = sorted(
        set(source.get("evidence", {}).items()).symmetric_difference(evidence_files(folder).items())
    )
    if source.get("bundle", {}).get("sha256") != bundle_digest(signed_files(folder)).value:
        why = "the promotion statement names another release bundle than the one present"
    elif source.get("key_id") not in trusted:
        why = f"the promotion names source key {source.get('key_id')}, not one {env} trusts"
    elif changed:
        why = f"{changed[0][0]} differs from what the promotion recorded (changed, added or removed since)"
    else:
        named = f"{source.get('env')}:{source.get('model')}/{source.get('version')}"
        return Check(PROMOTION_CHECK, True, f"promoted from {named}, signed with {env}'s key"), source
    return Check(PROMOTION_CHECK, False, why), source


def _model_signature(ev: Evidence, folder: Path, trust: EnvTrust) -> Check:
    """The environment's own model signature: the one its newest promotion names, verifying with its key."""
    promotions, where = ev.of(PROMOTION), environment_signature(trust.environment)
    if not promotions:
        return Check(MODEL_SIGNATURE_CHECK, False, f"no promotion statement names {where}")
    named, _ = named_file(promotions[-1])
    if named != where:
        return Check(MODEL_SIGNATURE_CHECK, False, f"{promotions[-1].path} names {named}, not {where}")
    problem = check_named(ev, promotions[-1])
    if problem is not None:
        return Check(MODEL_SIGNATURE_CHECK, False, problem)
    return check_model_signature(folder, trust.key, where, MODEL_SIGNATURE_CHECK)


def promoted_evidence(
    folder: Path,
    trust: EnvTrust,
    *,
    model_name: str | None,
    version: str | None,
    policy_digest: str | None = None,
) -> list[Check]:
    """The checks of what `trust.environment` signed about a version promoted into it (``environments/<env>/``).

    A promotion statement about this ``model.onnx`` and this target model and version, naming
    a trusted source key and exactly the files now in ``evidence/``; the environment's model
    signature it names, over exactly the bundle's files; the environment's own gate verdict
    PASSED (under `policy_digest`, when given) and its approval, not undone by its canary.
    Every statement and the signature are verified with `trust.key`.
    """
    return _promoted(folder, trust, model_name, version, policy_digest)[0]


def _promoted(
    folder: Path, trust: EnvTrust, model_name: str | None, version: str | None, policy_digest: str | None
) -> tuple[list[Check], dict[str, Any] | None]:
    ev = read_evidence(folder, trust.key, environment_dir(trust.environment), PROMOTED_CHECK_OF)
    onnx = file_digest(folder / MODEL).value if (folder / MODEL).is_file() else "missing"
    promotion, source = _promotion(ev, folder, trust, onnx, model_name, version)
    # Offline (no model name given): the target the environment's own signed promotion names.
    name = model_name or next((str(s.predicate["target"].get("model")) for s in ev.of(PROMOTION)), "")
    checks = [
        promotion,
        _model_signature(ev, folder, trust),
        _gate_verdict(ev, onnx, name, version, policy_digest),
        _approval(ev, onnx, bundle_digest(signed_files(folder)).value, name, version),
    ]
    env = trust.environment
    return [replace(c, name=f"{env} {c.name}") for c in checks], source


def first_verifying(
    keys: Iterable[Path], attempt: Callable[[Path], Verification]
) -> tuple[Verification, Path | None]:
    """The first of `keys` with which `attempt` verifies, and its result; else the first key's result and None."""
    first: Verification | None = None
    for key in keys:
        result = attempt(key)
        if result.ok:
            return result, key
        first = first or result
    return first or Verification("", [Check("signature", False, "no trusted source key")]), None


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
    trust: EnvTrust | None = None,
) -> Verification:
    """`verify_bundle`'s checks (``provenance``) and the evidence checks, as `require` asks.

    With `trust` (a version promoted into ``trust.environment``), those checks run on the
    source's model, version and evidence with the first of `trust.source_keys` that verifies,
    and `promoted_evidence` must hold too (`policy_digest` then applies to the target's verdict).
    """
    require = tuple(require)
    if trust is not None:
        promoted, source = _promoted(folder, trust, model_name, version, policy_digest)
        base, _ = first_verifying(
            trust.source_keys,
            lambda key: verify_release(
                folder,
                key,
                require=require,
                tags=tags,
                check_data=check_data,
                model_name=source.get("model") if source else None,
                version=str(source["version"]) if source and "version" in source else None,
            ),
        )
        return Verification(target or str(folder), base.checks + promoted)
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
