"""The secrets check: planted credentials are found by kind and line, never shown; a baseline accepts placeholders."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from attestflow.checks.config import CheckConfig
from attestflow.checks.runner import run_checks
from flows.cli import app
from tests.code.gitrepos import aws_key, commit, make_repo, private_key_block

PLACEHOLDER = 'db_password = "correct-horse-battery-staple-42"\n'


def _secrets(
    root: Path, base: str | None = None, config: CheckConfig | None = None
) -> list[tuple[str, int | None, str]]:
    return [
        (f.path or "", f.line, f.message)
        for f in run_checks(root, base, config or CheckConfig(), ["secrets"])
    ]


def _baseline(root: Path, path: str, is_secret: bool) -> str:
    """A detect-secrets baseline of `path` as detect-secrets writes it, each entry audited as `is_secret`."""
    from detect_secrets.core import baseline
    from detect_secrets.settings import default_settings

    with default_settings():
        found = baseline.create(str(root / path), root=str(root))
        data = baseline.format_for_output(found)
    results = {Path(k).as_posix(): v for k, v in data["results"].items()}
    for items in results.values():
        for item in items:
            item["is_secret"] = is_secret
    return json.dumps({**data, "results": results}, indent=2)


def test_a_planted_aws_key_and_private_key_are_found_by_kind_and_line_and_never_printed(
    tmp_path: Path,
) -> None:
    key = aws_key()
    block, body = private_key_block()
    root = make_repo(
        tmp_path / "r", {"app/settings.py": f"REGION = 'eu'\nKEY_ID = '{key}'\n", "deploy/id.pem": block}
    )

    found = _secrets(root)
    assert ("app/settings.py", 2, "AWS Access Key in the file") in found
    assert ("deploy/id.pem", 1, "Private Key in the file") in found

    sarif = tmp_path / "out.sarif"
    text = CliRunner().invoke(app, ["check", str(root), "--only", "secrets", "--sarif", str(sarif)])
    as_json = CliRunner().invoke(app, ["check", str(root), "--only", "secrets", "--json"])
    assert text.exit_code == 1 and as_json.exit_code == 1
    assert "app/settings.py:2" in text.output
    for shown in (text.output, as_json.output, sarif.read_text()):
        assert key not in shown and key[4:] not in shown
        assert body not in shown
    assert {f["path"] for f in json.loads(as_json.output)} == {"app/settings.py", "deploy/id.pem"}


def test_a_baselined_false_positive_is_clean_and_one_audited_as_real_is_not(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"docs/example.py": PLACEHOLDER})
    assert [m for _, _, m in _secrets(root)] == ["Secret Keyword in the file"]

    commit(root, {".secrets.baseline": _baseline(root, "docs/example.py", is_secret=False)}, "accept")
    assert _secrets(root) == []

    commit(root, {".secrets.baseline": _baseline(root, "docs/example.py", is_secret=True)}, "audited real")
    assert [p for p, _, _ in _secrets(root)] == ["docs/example.py"]


def test_a_baselined_placeholder_is_found_again_when_its_value_changes(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"docs/example.py": PLACEHOLDER})
    commit(root, {".secrets.baseline": _baseline(root, "docs/example.py", is_secret=False)}, "accept")
    commit(root, {"docs/example.py": PLACEHOLDER.replace("42", "43")}, "a new value")
    assert [p for p, _, _ in _secrets(root)] == ["docs/example.py"]


def test_with_a_base_only_the_secrets_the_change_added_are_findings(tmp_path: Path) -> None:
    old, new = aws_key(), aws_key()
    root = make_repo(tmp_path / "r", {"a.py": f"OLD = '{old}'\n", "b.py": "x = 1\n"})
    base = commit(root, {"c.py": "y = 2\n"}, "base")
    commit(root, {"a.py": f"OLD = '{old}'\nNEW = '{new}'\n", "b.py": "x = 2\n"}, "change")

    assert _secrets(root, base) == [("a.py", 2, "AWS Access Key in the file")]
    assert len(_secrets(root)) == 2


def test_excluded_paths_are_not_scanned(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"fixtures/keys.py": f"K = '{aws_key()}'\n"})
    config = CheckConfig.model_validate({"secrets": {"exclude": ["fixtures/*"]}})
    assert _secrets(root, config=config) == []
