"""The licence gate: denied licences and unreviewed unknown ones fail, naming the packages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attestflow.aibom import MODEL_REF
from attestflow.policy import LicensesPolicy, load_policy
from tasks.gates.licenses import denied_in, judge_licences

ROOT = Path(__file__).resolve().parents[2]
RULES = LicensesPolicy(deny=["AGPL-*", "GPL-3.0*"], unknown=["Reviewed_Pkg"])


def _by_metric(found: dict[str, str | None], rules: LicensesPolicy = RULES) -> dict[str, Any]:
    return {d.metric: d for d in judge_licences(found, rules, "sha256:x", "the AI bill of materials")}


@pytest.mark.parametrize(
    ("expression", "denied"),
    [
        ("MIT", []),
        ("GPL-3.0-only", ["GPL-3.0-only"]),
        ("agpl-3.0-or-later", ["agpl-3.0-or-later"]),
        ("MIT OR GPL-3.0-only", []),
        ("MIT AND GPL-3.0-only", ["GPL-3.0-only"]),
        ("GPL-3.0-only OR AGPL-3.0-only", ["GPL-3.0-only", "AGPL-3.0-only"]),
        ("(MIT OR GPL-3.0-only) AND AGPL-3.0-only", ["AGPL-3.0-only"]),
        ("GPL-3.0-or-later WITH GCC-exception-3.1", ["GPL-3.0-or-later"]),
        ("GPL-2.0-or-later", []),
        ("Apache License 2.0", []),
    ],
)
def test_expressions_are_judged_or_as_a_choice_and_and_as_both(expression: str, denied: list[str]) -> None:
    assert denied_in(expression, RULES.deny) == denied


def test_a_denied_licence_fails_naming_the_package() -> None:
    decisions = _by_metric({"numpy==2.0": "BSD-3-Clause", "copyleft==1.0": "MIT AND GPL-3.0-only"})
    denied = decisions["denied_licences"]
    assert not denied.passed and denied.value == 1
    assert "copyleft==1.0 (GPL-3.0-only)" in denied.reason
    assert decisions["unknown_licences"].passed


def test_an_unknown_licence_not_reviewed_fails_and_a_reviewed_one_passes() -> None:
    decisions = _by_metric({"mystery==0.1": None, "reviewed-pkg==1.0": None, "numpy==2.0": "BSD-3-Clause"})
    unknown = decisions["unknown_licences"]
    assert not unknown.passed and unknown.value == 1
    assert "mystery==0.1" in unknown.reason and "reviewed-pkg" not in unknown.reason
    assert decisions["denied_licences"].passed


def test_the_demo_policy_passes_the_installed_environment() -> None:
    from tasks.gates.licenses import _environment_licences

    rules = load_policy(ROOT / "configs/gates.yaml").licenses
    assert rules is not None
    assert all(d.passed for d in judge_licences(_environment_licences(), rules, "x", "env"))


def test_the_gate_reads_the_licences_of_a_bom(tmp_path: Path) -> None:
    from tasks.gates.licenses import gate

    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "components": [
            {"type": "machine-learning-model", "name": "m", "bom-ref": MODEL_REF},
            {"type": "machine-learning-model", "name": "base.safetensors", "bom-ref": "base-model"},
            {
                "type": "library",
                "name": "strong",
                "version": "1",
                "bom-ref": "a",
                "purl": "pkg:pypi/strong@1",
                "licenses": [{"license": {"id": "AGPL-3.0-only"}}],
            },
            {"type": "library", "name": "blank", "version": "2", "bom-ref": "b", "purl": "pkg:pypi/blank@2"},
        ],
    }
    bom = tmp_path / "bom.json"
    bom.write_text(json.dumps(doc))
    policy = load_policy(ROOT / "configs/gates.yaml")

    class Ev:
        pass

    ev: Any = Ev()
    ev.bom = bom
    decisions = {d.metric: d for d in gate(ev, policy)}
    assert (
        not decisions["denied_licences"].passed
        and "strong==1 (AGPL-3.0-only)" in decisions["denied_licences"].reason
    )
    unknown = decisions["unknown_licences"]
    assert not unknown.passed and unknown.value == 1 and "blank==2" in unknown.reason
    bom.write_text("{not json")
    assert not any(d.passed for d in gate(ev, policy))


def test_removing_a_deny_pattern_or_accepting_an_unknown_is_a_loosening() -> None:
    from attestflow.checks.policy_diff import loosenings

    old = load_policy(ROOT / "configs/gates.yaml")
    assert old.licenses is not None
    new = old.model_copy(
        update={"licenses": LicensesPolicy(deny=old.licenses.deny[1:], unknown=[*old.licenses.unknown, "x"])}
    )
    found = loosenings(old, new)
    assert f"licenses: {old.licenses.deny[0]!r} no longer denied" in found
    assert "licenses: x accepted without a licence" in found
