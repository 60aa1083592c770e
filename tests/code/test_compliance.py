"""The compliance report: strict mappings, each control's status from planted signed evidence, and refusals."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from attestflow.audit import AuditLog
from attestflow.bundle import AIBOM, ATTESTATION, ATTRIBUTIONS
from attestflow.compliance.assess import Report, assess, judge
from attestflow.compliance.gather import ReportRefusedError, declared, gather_folder
from attestflow.compliance.mapping import load_mapping, read_mapping
from attestflow.compliance.render import html, markdown, render
from attestflow.compliance.vocabulary import PLAIN, parse_requirement
from attestflow.errors import BadInputError, ConfigError
from attestflow.evidence import EVIDENCE_DIR
from attestflow.keys import KeyPair, ensure_keypair
from flows.cli import app
from tests.code.compliance_planted import CARD_SECTIONS, NAME, POLICY, ROOT, VERSION, Planted

MAPPINGS = ROOT / "configs/compliance"
EU = read_mapping(MAPPINGS / "eu-ai-act.yaml")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return ensure_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, keys: KeyPair) -> Path:
    return Planted(tmp_path_factory.mktemp("pristine") / "model", keys).root


@pytest.fixture
def planted(pristine: Path, keys: KeyPair, tmp_path: Path) -> Planted:
    """A fresh copy of the signed bundle, with no evidence yet."""
    return Planted.copied(pristine, tmp_path / "model", keys)


def _card(tmp_path: Path, sections: dict[str, Any] = CARD_SECTIONS) -> Path:
    path = tmp_path / "model_card.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path


def _audit(tmp_path: Path, keys: KeyPair, version: str = VERSION) -> AuditLog:
    log = AuditLog.of(tmp_path / "ws", private_key=keys.private_key, public_key=keys.public_key)
    log.append("registered", model=NAME, version=version, actor="user:bob")
    log.append("promotion", model=NAME, version=version, actor="user:ann")
    return log


def _report(
    planted: Planted, tmp_path: Path, *, card: Path | None = None, policy: Path = POLICY, audit: bool = True
) -> Report:
    text = declared(card or tmp_path / "no-card.yaml", policy)
    log = _audit(tmp_path, planted.keys) if audit else None
    gathered = gather_folder(
        planted.root, planted.keys.public_key, declared_text=text, audit=log, version=VERSION
    )
    return assess(EU, gathered)


def _status(report: Report) -> dict[str, str]:
    return {r.control.id: r.status for r in report.controls}


def _finding(report: Report, control: str, requirement: str) -> tuple[str, str]:
    (result,) = [r for r in report.controls if r.control.id == control]
    (f,) = [f for f in result.findings if f.requirement == requirement]
    return f.status, f.detail


# The mapping


def test_the_shipped_mappings_load_and_their_digest_is_the_files_sha256() -> None:
    for name in ("eu-ai-act", "nist-ai-rmf"):
        mapping = load_mapping(MAPPINGS, name)
        assert mapping.digest.value == hashlib.sha256((MAPPINGS / f"{name}.yaml").read_bytes()).hexdigest()
        assert any(c.gap for c in mapping.spec.controls), "some controls are honestly marked without evidence"
        assert any("high" in c.required_when for c in mapping.spec.controls)
    titles = " ".join(c.title for c in EU.spec.controls)
    for article in (
        "Article 9",
        "Article 10",
        "Article 11",
        "Annex IV",
        "Article 12",
        "Article 13",
        "Article 14",
    ):
        assert article in titles
    assert "Article 15" in titles


def _mapping(tmp_path: Path, **change: Any) -> Path:
    raw = yaml.safe_load((MAPPINGS / "eu-ai-act.yaml").read_text())
    control = {**raw["controls"][0], **change.pop("control", {})}
    raw["controls"] = [control, *raw["controls"][1:]]
    raw.update(change)
    path = tmp_path / "eu-ai-act.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"control": {"evidence": ["signature", "sigature"]}}, "unknown evidence 'sigature'"),
        ({"control": {"evidence": ["gate:fairnes"]}}, "'gate:fairnes': gate: takes one of"),
        ({"control": {"evidence": ["declared:mood"]}}, "'declared:mood': declared: takes one of"),
        ({"control": {"evidence": ["policy:fairness", "policy:fairness"]}}, "listed twice"),
        ({"control": {"evidence": []}}, "lists no evidence: say why in 'gap'"),
        ({"control": {"gap": "none"}}, "lists evidence and a gap"),
        ({"control": {"required_when": ["severe"]}}, "required_when.0"),
        ({"control": {"colour": "red"}}, "unknown key 'controls.0.colour'"),
        ({"control": {"description": "one\ntwo"}}, "a description is one line"),
        ({"control": {"id": "art10-governance"}}, "control id(s) listed twice: art10-governance"),
        ({"framework": "nist-ai-rmf"}, "framework 'nist-ai-rmf' in a file named eu-ai-act.yaml"),
        ({"controls": []}, "controls"),
    ],
)
def test_a_bad_mapping_is_one_config_error_line(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        read_mapping(_mapping(tmp_path, **change))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_unknown_framework_is_bad_input_naming_the_known_ones() -> None:
    for name in ("iso-42001", "../configs/release", "EU"):
        with pytest.raises(BadInputError, match=r"unknown framework .*: one of eu-ai-act, nist-ai-rmf"):
            load_mapping(MAPPINGS, name)


def test_every_word_of_the_vocabulary_is_judged(planted: Planted, tmp_path: Path) -> None:
    gathered = _report(planted, tmp_path).gathered
    for word in PLAIN:
        assert judge(parse_requirement(word), gathered).status in ("verified", "missing")


# Status from planted signed evidence


def test_a_released_version_is_verified_control_by_control(planted: Planted, tmp_path: Path) -> None:
    report = _report(planted.released(), tmp_path, card=_card(tmp_path))
    status = _status(report)
    for control in (
        "art9",
        "art11",
        "annex4-1a",
        "art12",
        "art13",
        "art14",
        "art15-accuracy",
        "art15-robustness",
    ):
        assert status[control] == "verified", (control, report.as_json())
    # offline, the DVC remote is not asked: never verified without re-checking it
    assert status["art10-governance"] == "missing"
    assert "not re-checked offline" in _finding(report, "art10-governance", "data_snapshot")[1]
    for gap in ("annex4-7", "annex4-8", "annex4-9", "art10-special-categories"):
        assert status[gap] == "missing"
    (art14,) = [r for r in report.controls if r.control.id == "art14"]
    items = [i for f in art14.findings for i in f.items]
    assert any(i.kind == "approval" and i.file.startswith(f"{EVIDENCE_DIR}/approval-") for i in items)
    assert all(i.digest and i.digest.startswith("sha256:") for i in items if i.kind == "approval")
    assert report.counts["verified"] + report.counts["declared"] + report.counts["missing"] == len(
        EU.spec.controls
    )


def test_automatic_approval_does_not_meet_human_oversight(planted: Planted, tmp_path: Path) -> None:
    planted.verdict()
    planted.approval(mode="auto")
    report = _report(planted, tmp_path)
    assert _status(report)["art14"] == "missing"
    assert _finding(report, "art14", "approval")[0] == "verified"
    status, detail = _finding(report, "art14", "approval:human")
    assert status == "missing" and "approved automatically (user:ann), not by a person" in detail


def test_a_failed_verdict_verifies_no_gate(planted: Planted, tmp_path: Path) -> None:
    planted.verdict(failing=("fairness",))
    planted.approval()
    report = _report(planted, tmp_path)
    assert _status(report)["art9"] == "missing" and _status(report)["art15-accuracy"] == "missing"
    status, detail = _finding(report, "art9", "gate:fairness")
    assert status == "missing" and "the signed gate verdict is FAILED (failed: fairness/m)" in detail


def test_a_gate_the_verdict_did_not_run_is_missing(planted: Planted, tmp_path: Path) -> None:
    planted.verdict(gates=("format", "data", "performance", "robustness"))
    report = _report(planted, tmp_path)
    assert _finding(report, "art9", "gate:fairness") == (
        "missing",
        "gate fairness did not run in the signed gate verdict",
    )


def test_human_text_alone_is_declared_and_a_signed_card_verifies_it(planted: Planted, tmp_path: Path) -> None:
    planted.verdict()
    nist = load_mapping(MAPPINGS, "nist-ai-rmf")
    card = _card(tmp_path)
    text = declared(card, POLICY)
    unsigned = assess(nist, gather_folder(planted.root, planted.keys.public_key, declared_text=text))
    assert _status(unsigned)["MAP-1.1"] == "declared"
    (intended,) = [f for r in unsigned.controls if r.control.id == "MAP-1.1" for f in r.findings][:1]
    assert intended.items[0].file == str(card) and intended.items[0].kind == "declared text"
    assert _status(unsigned)["GOVERN-2.1"] == "missing"  # no owners section written anywhere
    planted.model_card()
    signed = assess(nist, gather_folder(planted.root, planted.keys.public_key, declared_text=text))
    assert _status(signed)["MAP-1.1"] == "verified"
    without = assess(
        nist,
        gather_folder(
            planted.root, planted.keys.public_key, declared_text=declared(tmp_path / "x.yaml", POLICY)
        ),
    )
    assert _status(without)["MAP-1.1"] == "verified"  # the signed card carries the sections itself


def test_a_policy_other_than_the_signed_verdicts_is_only_declared(planted: Planted, tmp_path: Path) -> None:
    planted.verdict()
    other = tmp_path / "gates.yaml"
    other.write_text(POLICY.read_text().replace("threshold: 0.80", "threshold: 0.81"))
    status, detail = _finding(_report(planted, tmp_path, policy=other), "art9", "policy:fairness")
    assert status == "declared" and "the signed verdict names policy sha256:" in detail
    status, _ = _finding(_report(planted, tmp_path / "again"), "art9", "policy:fairness")
    assert status == "verified"
    no_fairness = tmp_path / "nofair.yaml"
    raw = yaml.safe_load(POLICY.read_text())
    raw["run"].remove("fairness")
    no_fairness.write_text(yaml.safe_dump(raw))
    status, detail = _finding(
        _report(planted, tmp_path / "third", policy=no_fairness), "art9", "policy:fairness"
    )
    assert status == "missing" and "not in the run list" in detail


def test_no_sensitive_attribute_attributions_or_bom_is_missing(keys: KeyPair, tmp_path: Path) -> None:
    bare = Planted(tmp_path / "bare" / "model", keys, sensitive=None, extras=False)
    bare.released()
    report = _report(bare, tmp_path, card=_card(tmp_path))
    assert _finding(report, "art10-quality-bias", "sensitive_attribute")[0] == "missing"
    assert _finding(report, "art13", "attributions") == (
        "missing",
        f"{ATTRIBUTIONS} is not in the signed bundle",
    )
    assert _finding(report, "art15-cybersecurity", "aibom") == (
        "missing",
        f"{AIBOM} is not in the signed bundle",
    )


def test_the_audit_log_must_verify_and_record_this_version(planted: Planted, tmp_path: Path) -> None:
    planted.released()
    assert _finding(_report(planted, tmp_path), "art12", "audit_log")[0] == "verified"
    log = tmp_path / "ws" / "audit.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0].replace("registered", "registerde"), *lines[1:]]) + "\n")
    text = declared(tmp_path / "none.yaml", POLICY)
    edited = AuditLog.of(
        tmp_path / "ws", private_key=planted.keys.private_key, public_key=planted.keys.public_key
    )
    gathered = gather_folder(
        planted.root, planted.keys.public_key, declared_text=text, audit=edited, version=VERSION
    )
    status, detail = _finding(assess(EU, gathered), "art12", "audit_log")
    assert status == "missing" and "the audit log does not verify" in detail
    other = assess(
        EU,
        gather_folder(
            planted.root,
            planted.keys.public_key,
            declared_text=text,
            audit=_audit(tmp_path / "o", planted.keys, "7"),
            version=VERSION,
        ),
    )
    assert _finding(other, "art12", "audit_log") == (
        "missing",
        f"the audit log records nothing about version {VERSION}",
    )


# A version that does not verify gets no report


def test_a_tampered_bundle_is_refused_naming_the_failed_check(planted: Planted, tmp_path: Path) -> None:
    planted.released()
    (planted.root / ATTESTATION / "metrics.json").write_text('{"training": {"accuracy": 0.99}}')
    with pytest.raises(ReportRefusedError) as e:
        _report(planted, tmp_path)
    assert any(r.startswith("signature: model-signing verification failed") for r in e.value.reasons)
    assert any("metrics.json" in r for r in e.value.reasons)


def test_forged_evidence_is_refused(planted: Planted, tmp_path: Path) -> None:
    path = planted.verdict(failing=("fairness",))
    envelope = json.loads(path.read_text())
    stmt = json.loads(base64.b64decode(envelope["payload"]))
    stmt["predicate"]["verificationResult"] = "PASSED"
    envelope["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    path.write_text(json.dumps(envelope))
    with pytest.raises(ReportRefusedError, match=r"evidence: evidence/verification_summary-.*no signature"):
        _report(planted, tmp_path)


def _cli_config(tmp_path: Path, keys: KeyPair) -> Path:
    raw = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
    raw["workspace"] = str(tmp_path / "ws")
    raw["sign"] = {"private_key": str(keys.private_key), "public_key": str(keys.public_key)}
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_report_command_refuses_a_tampered_folder_and_never_says_verified(
    planted: Planted, tmp_path: Path
) -> None:
    planted.released()
    config = _cli_config(tmp_path, planted.keys)
    args = ["report", str(planted.root), "--framework", "eu-ai-act", "--config", str(config)]
    ok = CliRunner().invoke(app, [*args, "--format", "json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["counts"]["verified"] > 0
    (planted.root / ATTESTATION / "metrics.json").write_text("{}")
    for fmt in ("md", "html", "json"):
        result = CliRunner().invoke(app, [*args, "--format", fmt])
        assert result.exit_code == 1, result.output
        assert (
            "report refused" in result.output
            and "signature: model-signing verification failed" in result.output
        )
        assert "verified" not in result.output.lower().replace("verification failed", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models:/credit-default@champion", "--framework", "iso-42001"], "unknown framework 'iso-42001'"),
        (["models:/credit default", "--framework", "eu-ai-act"], "not a model URI"),
        (
            ["models:/credit-default/1", "--framework", "eu-ai-act", "--format", "pdf"],
            "--format takes one of md, html, json",
        ),
        (["no/such/folder", "--framework", "eu-ai-act"], "no/such/folder is not a model folder"),
    ],
)
def test_bad_input_to_the_report_command_is_one_line_exit_2(
    keys: KeyPair, tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["report", *args, "--config", str(_cli_config(tmp_path, keys))])
    assert result.exit_code == 2, result.output
    own = [line for line in result.output.splitlines() if line.strip() and " INFO mlflow" not in line]
    assert message in result.output and len(own) == 1 and "Traceback" not in result.output, result.output


# Rendering


def test_every_format_shows_every_control_and_the_mapping_digest(planted: Planted, tmp_path: Path) -> None:
    report = _report(planted.released(), tmp_path, card=_card(tmp_path))
    as_json = json.loads(render(report, "json"))
    assert as_json["mapping"]["sha256"] == EU.digest.value and as_json["model"]["version"] == VERSION
    assert [c["id"] for c in as_json["controls"]] == [c.id for c in EU.spec.controls]
    assert as_json["verification"]["ok"] and as_json["counts"] == report.counts
    for text in (markdown(report), html(report)):
        assert EU.digest.value in text
        for control in EU.spec.controls:
            assert control.title in text.replace("&#x27;", "'")


def test_the_html_page_has_no_script_and_escapes_every_text(planted: Planted, tmp_path: Path) -> None:
    hostile = {**CARD_SECTIONS, "intended_use": "<script>alert(1)</script><img src=x onerror=alert(2)>"}
    planted.verdict()  # no signed card: the human text is shown as declared
    page = html(_report(planted, tmp_path, card=_card(tmp_path, hostile)))
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;script&gt;" in page
