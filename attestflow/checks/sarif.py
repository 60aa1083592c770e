"""Findings as SARIF 2.1.0, the format code-scanning services (GitHub, GitLab, Azure DevOps) read.

One run of one tool; one rule per check that ran; one result per finding, located at its file
and line, or at the check itself (a logical location) where a finding has no file.
Spec: https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html
"""

from __future__ import annotations

from typing import Any

from attestflow.checks.core import Finding

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
RULES = {
    "secrets": "A secret (credential, private key, token) in a tracked file",
    "model-files": "A model, pickle or large binary file tracked by git instead of DVC",
    "code": "A code security rule (ruff S, flake8-bandit) broken",
    "templates": "A prompt template with undeclared variables, a secret, PII or over its length budget",
    "advisories": "A locked dependency with a known vulnerability",
    "lock": "The installed environment differs from the lock",
    "commits": "A commit that is unsigned, signed by an unknown key or not reachable from a protected ref",
    "policy": "A gate policy loosened without an approval",
}


def _location(f: Finding) -> dict[str, Any]:
    if f.path is None:
        return {"logicalLocations": [{"name": f.check, "kind": "module"}]}
    physical: dict[str, Any] = {"artifactLocation": {"uri": f.path, "uriBaseId": "%SRCROOT%"}}
    if f.line is not None:
        physical["region"] = {"startLine": max(f.line, 1)}
    return {"physicalLocation": physical}


def to_sarif(findings: list[Finding], checks: list[str], version: str) -> dict[str, Any]:
    """A SARIF 2.1.0 log of `findings` from the checks `checks` (each a rule, even with no result)."""
    names = list(dict.fromkeys([*checks, *(f.check for f in findings)]))
    index = {name: i for i, name in enumerate(names)}
    rules = [
        {
            "id": name,
            "name": name.replace("-", " ").title().replace(" ", ""),
            "shortDescription": {"text": RULES.get(name, name)},
            "defaultConfiguration": {"level": "error"},
        }
        for name in names
    ]
    results = [
        {
            "ruleId": f.check,
            "ruleIndex": index[f.check],
            "level": "error",
            "message": {"text": f"{f.message}. Fix: {f.fix}"},
            "locations": [_location(f)],
        }
        for f in findings
    ]
    driver = {
        "name": "attestflow check",
        "version": version,
        "rules": rules,
    }
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": [{"tool": {"driver": driver}, "results": results}]}
