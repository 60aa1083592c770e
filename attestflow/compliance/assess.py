"""Each control's status on one model version: verified, declared or missing, and the evidence behind it.

A control is ``verified`` when every piece of evidence it asks for was found in what the
version's verification accepted now (`attestflow.compliance.gather`): signed files, signed
statements, checks that held, the audit log's verified chain. It is ``declared`` when all of
it was found but some only in text people wrote in the repository (the model card sections,
the gate policy file when no signed verdict names it), and ``missing`` otherwise, including a
control the mapping says attestflow has no evidence for. How each word of the vocabulary is
judged is said here, once, in `judge`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from attestflow.bundle import ATTESTATION, MODEL, PROVENANCE, SIGNATURE
from attestflow.compliance.gather import CONFIG, Gathered
from attestflow.compliance.mapping import Control, Mapping
from attestflow.compliance.vocabulary import DECLARED, GATE, POLICY, Requirement
from attestflow.evidence import APPROVAL, CANARY, GATES_KEY, MODEL_CARD, VSA
from attestflow.evidence_read import APPROVAL_CHECK, GATE_CHECK, Statement

Status = Literal["verified", "declared", "missing"]
STATUSES: tuple[Status, ...] = ("verified", "declared", "missing")
SIGNED_FILES = {
    "data_manifest": (f"{ATTESTATION}/data_manifest.json", "data manifest"),
    "metrics": (f"{ATTESTATION}/metrics.json", "metrics"),
    "release_config": (CONFIG, "release config"),
    "aibom": (f"{ATTESTATION}/aibom.cdx.json", "AI bill of materials"),
    "attributions": (f"{ATTESTATION}/attributions.json", "attributions"),
}
"""Requirements met by a file of the signed bundle: its path and what it is."""


@dataclass(frozen=True)
class Item:
    """One piece of evidence behind a finding."""

    file: str
    digest: str | None
    """``sha256:<hex>`` of the file, when it is one."""
    kind: str
    time: str | None = None


@dataclass(frozen=True)
class Finding:
    """How one requirement of a control fared."""

    requirement: str
    status: Status
    detail: str
    items: tuple[Item, ...] = ()


@dataclass(frozen=True)
class ControlResult:
    """One control of the mapping, judged on the version."""

    control: Control
    status: Status
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class Report:
    """A framework's controls judged on one verified model version."""

    mapping: Mapping
    gathered: Gathered
    controls: tuple[ControlResult, ...]

    @property
    def counts(self) -> dict[Status, int]:
        found = Counter(c.status for c in self.controls)
        return {s: found.get(s, 0) for s in STATUSES}

    def as_json(self) -> dict[str, Any]:
        """The report as one JSON object."""
        g, spec = self.gathered, self.mapping.spec
        return {
            "framework": spec.framework,
            "title": spec.title,
            "mapping": {"path": str(self.mapping.path), "sha256": self.mapping.digest.value},
            "model": {"uri": g.target, "name": g.model, "version": g.version, "onnx_sha256": g.folder.onnx},
            "verification": {
                "ok": g.verification.ok,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in g.verification.checks],
            },
            "generated": g.generated,
            "counts": self.counts,
            "controls": [
                {
                    "id": r.control.id,
                    "title": r.control.title,
                    "description": r.control.description,
                    "status": r.status,
                    "required_when": r.control.required_when,
                    "gap": r.control.gap,
                    "evidence": [
                        {
                            "requirement": f.requirement,
                            "status": f.status,
                            "detail": f.detail,
                            "items": [vars(i) for i in f.items],
                        }
                        for f in r.findings
                    ],
                }
                for r in self.controls
            ],
        }


def assess(mapping: Mapping, gathered: Gathered) -> Report:
    """Judge every control of `mapping` on the gathered evidence of one version."""
    return Report(mapping, gathered, tuple(_control(c, gathered) for c in mapping.spec.controls))


def _control(control: Control, g: Gathered) -> ControlResult:
    findings = tuple(judge(r, g) for r in control.requirements)
    if not findings or any(f.status == "missing" for f in findings):
        status: Status = "missing"
    elif all(f.status == "verified" for f in findings):
        status = "verified"
    else:
        status = "declared"
    return ControlResult(control, status, findings)


def _sha(digest: str | None) -> str | None:
    return f"sha256:{digest}" if digest else None


def _check(g: Gathered, *names: str) -> tuple[bool, str]:
    """Whether the verification's checks `names` were all run and held, and what they said."""
    checks = {c.name: c for c in g.verification.checks}
    missing = [n for n in names if n not in checks]
    if missing:
        return False, f"{', '.join(missing)} not checked"
    return all(checks[n].ok for n in names), "; ".join(checks[n].detail for n in names)


def _evidence_check(g: Gathered, name: str) -> tuple[bool, str]:
    """Whether every evidence check `name` (the source's, and an environment's when promoted) held."""
    found = [c for c in g.folder.checks if c.name == name or c.name.endswith(f" {name}")]
    if not found:
        return False, f"{name} not checked"
    failed = [f"{c.name}: {c.detail}" for c in found if not c.ok]
    return not failed, "; ".join(failed) or "; ".join(c.detail for c in found)


def _about_model(g: Gathered, predicate_type: str) -> list[Statement]:
    """Verified statements of one type whose subject is this ``model.onnx``, oldest first."""
    return [
        s
        for s in g.folder.statements
        if s.predicate_type == predicate_type and s.subject.get(MODEL) == g.folder.onnx
    ]


def _item(g: Gathered, s: Statement, kind: str) -> Item:
    return Item(s.path, _sha(g.folder.evidence.get(s.path)), kind, s.time.isoformat(timespec="seconds"))


def _signed_file(g: Gathered, rel: str, kind: str) -> Finding | None:
    digest = g.folder.signed.get(rel)
    if digest is None:
        return None
    return Finding("", "verified", f"{rel} is in the signed bundle", (Item(rel, _sha(digest), kind),))


def _missing(req: Requirement, why: str) -> Finding:
    return Finding(str(req), "missing", why)


def _as(req: Requirement, found: Finding) -> Finding:
    return Finding(str(req), found.status, found.detail, found.items)


def _provenance_item(g: Gathered) -> Item:
    finished = g.folder.provenance.get("predicate", {}).get("runDetails", {}).get("metadata", {})
    return Item(
        PROVENANCE, _sha(g.folder.signed.get(PROVENANCE)), "SLSA provenance", finished.get("finishedOn")
    )


def _verdict(g: Gathered) -> Statement | None:
    verdicts = _about_model(g, VSA)
    return verdicts[-1] if verdicts else None


def _section(card: dict[str, Any], section: str) -> str:
    """A model card section's text in the signed card (at its top level or one level down)."""
    for value in (card.get(section), *(v.get(section) for v in card.values() if isinstance(v, dict))):
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, list) and value:
            return "; ".join(str(v) for v in value)
    return ""


def judge(req: Requirement, g: Gathered) -> Finding:
    """How the requirement `req` fares on the gathered evidence of a version."""
    if req.kind == GATE:
        return _gate(req, g)
    if req.kind == POLICY:
        return _policy(req, g)
    if req.kind == DECLARED:
        return _declared(req, g)
    if req.kind in SIGNED_FILES:
        rel, kind = SIGNED_FILES[req.kind]
        found = _signed_file(g, rel, kind)
        return _as(req, found) if found else _missing(req, f"{rel} is not in the signed bundle")
    return _RULES[req.kind](req, g)


def _signature(req: Requirement, g: Gathered) -> Finding:
    ok, detail = _check(g, "signature", "files")
    item = Item(SIGNATURE, _sha(g.folder.signature_digest), "model signature")
    return Finding(str(req), "verified", detail, (item,)) if ok else _missing(req, detail)


def _provenance(req: Requirement, g: Gathered) -> Finding:
    ok, detail = _check(g, "provenance signature", "provenance subject")
    return Finding(str(req), "verified", detail, (_provenance_item(g),)) if ok else _missing(req, detail)


def _data_snapshot(req: Requirement, g: Gathered) -> Finding:
    ok, detail = _check(g, "data snapshot")
    if not ok:
        return _missing(
            req, detail if "not checked" not in detail else "the data snapshot is not re-checked offline"
        )
    deps = g.folder.provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
    data = next(d for d in deps if d["name"].startswith("data:"))
    item = Item(str(data.get("uri") or data["name"]), f"md5:{data['digest'].get('md5')}", "DVC data snapshot")
    return Finding(str(req), "verified", detail, (item,))


def _sensitive(req: Requirement, g: Gathered) -> Finding:
    sensitive = (g.folder.config.get("data") or {}).get("sensitive")
    if not sensitive:
        return _missing(req, "the signed release config names no sensitive attribute (data.sensitive)")
    item = Item(CONFIG, _sha(g.folder.signed.get(CONFIG)), "release config")
    return Finding(str(req), "verified", f"data.sensitive is {sensitive!r} in the signed config", (item,))


def _gate_verdict(req: Requirement, g: Gathered) -> Finding:
    ok, detail = _evidence_check(g, GATE_CHECK)
    verdict = _verdict(g)
    if not ok or verdict is None:
        return _missing(req, detail)
    return Finding(str(req), "verified", detail, (_item(g, verdict, "gate verdict"),))


def _gate(req: Requirement, g: Gathered) -> Finding:
    ok, detail = _evidence_check(g, GATE_CHECK)
    verdict = _verdict(g)
    if not ok or verdict is None:
        return _missing(req, detail)
    gates = verdict.predicate.get(GATES_KEY, {}).get("gates", [])
    decisions = [d for d in gates if d.get("gate") == req.parameter]
    if not decisions:
        return _missing(req, f"gate {req.parameter} did not run in the signed gate verdict")
    failed = [str(d.get("metric")) for d in decisions if not d.get("passed")]
    if failed:
        return _missing(req, f"gate {req.parameter} failed on {', '.join(failed)}")
    shown = ", ".join(
        f"{d.get('metric')}={d['value']:.4g}" if isinstance(d.get("value"), float) else str(d.get("metric"))
        for d in decisions
    )
    return Finding(
        str(req), "verified", f"gate {req.parameter} passed: {shown}", (_item(g, verdict, "gate verdict"),)
    )


def _policy(req: Requirement, g: Gathered) -> Finding:
    d = g.declared
    if req.parameter not in d.policy_runs:
        return _missing(req, f"gate {req.parameter} is not in the run list of {d.policy_path}")
    policy = Item(d.policy_path, _sha(d.policy_file_digest), "gate policy")
    verdict = _verdict(g)
    signed = (verdict.predicate.get("policy", {}).get("digest", {}).get("sha256") if verdict else None) or ""
    if verdict is not None and signed == d.policy_digest:
        detail = f"gate {req.parameter} runs under {d.policy_path}, the policy the signed verdict names"
        return Finding(str(req), "verified", detail, (policy, _item(g, verdict, "gate verdict")))
    why = (
        "no signed verdict names it"
        if not signed
        else f"the signed verdict names policy sha256:{signed[:12]}"
    )
    return Finding(str(req), "declared", f"gate {req.parameter} is in {d.policy_path}; {why}", (policy,))


def _approval(req: Requirement, g: Gathered) -> Finding:
    ok, detail = _evidence_check(g, APPROVAL_CHECK)
    approvals = [s for s in g.folder.statements if s.predicate_type == APPROVAL]
    if not ok or not approvals:
        return _missing(req, detail)
    newest = approvals[-1]
    if req.kind == "approval:human" and newest.predicate.get("mode") != "human":
        return _missing(req, f"approved automatically ({newest.predicate.get('approver')}), not by a person")
    return Finding(str(req), "verified", detail, (_item(g, newest, "approval"),))


def _canary(req: Requirement, g: Gathered) -> Finding:
    canaries = _about_model(g, CANARY)
    if not canaries:
        return _missing(req, "no signed canary verdict (a first release has no champion to compare with)")
    newest = canaries[-1]
    if newest.predicate.get("result") != "PASSED":
        return _missing(req, f"the canary said no: {'; '.join(newest.predicate.get('reasons', []))}")
    return Finding(str(req), "verified", "the signed canary verdict PASSED", (_item(g, newest, "canary"),))


def _audit(req: Requirement, g: Gathered) -> Finding:
    a = g.audit
    if a is None:
        return _missing(req, "no audit log was consulted (offline)")
    if not a.ok:
        return _missing(req, f"the audit log does not verify: {a.detail}")
    if not a.entries:
        return _missing(req, f"the audit log records nothing about version {g.version}")
    events = ", ".join(dict.fromkeys(str(e["event"]) for e in a.entries))
    item = Item(a.location, None, "audit log", str(a.entries[-1]["time"]))
    return Finding(str(req), "verified", f"{len(a.entries)} entries ({events}); {a.detail}", (item,))


def _model_card(req: Requirement, g: Gathered) -> Finding:
    cards = _about_model(g, MODEL_CARD)
    if not cards:
        return _missing(req, "no signed model card statement about this model.onnx")
    return Finding(str(req), "verified", "a signed model card", (_item(g, cards[-1], "model card"),))


def _declared(req: Requirement, g: Gathered) -> Finding:
    section = str(req.parameter)
    cards = _about_model(g, MODEL_CARD)
    if cards and _section(cards[-1].predicate, section):
        return Finding(
            str(req),
            "verified",
            f"{section} is in the signed model card",
            (_item(g, cards[-1], "model card"),),
        )
    text = g.declared.sections.get(section)
    if text:
        item = Item(g.declared.card_path, _sha(g.declared.card_digest), "declared text")
        return Finding(str(req), "declared", f"{section}: {text[:160]}", (item,))
    return _missing(req, f"{section} is written neither in a signed model card nor in {g.declared.card_path}")


_RULES = {
    "signature": _signature,
    "provenance": _provenance,
    "data_snapshot": _data_snapshot,
    "sensitive_attribute": _sensitive,
    "gate_verdict": _gate_verdict,
    "approval": _approval,
    "approval:human": _approval,
    "canary": _canary,
    "audit_log": _audit,
    "model_card": _model_card,
}
