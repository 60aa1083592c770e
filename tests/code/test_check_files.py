"""The model-files, code and templates checks, each seen saying no in a throwaway git repository."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

from attestflow.checks.config import CheckConfig
from attestflow.checks.runner import run_checks
from attestflow.checks.templates import pii_in, template_digests
from tests.code.gitrepos import aws_key, make_repo


def _found(root: Path, check: str, **section: object) -> list[tuple[str | None, int | None, str]]:
    config = CheckConfig.model_validate({check: section} if section else {})
    return [(f.path, f.line, f.message) for f in run_checks(root, None, config, [check])]


def test_a_pickle_renamed_txt_and_a_torch_zip_are_found_by_content(tmp_path: Path) -> None:
    torch_zip = tmp_path / "w.zip"
    with zipfile.ZipFile(torch_zip, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": [1.0]}))
    files = {"notes/readme.txt": pickle.dumps({"weights": [1, 2, 3]}), "model.bin": torch_zip.read_bytes()}
    root = make_repo(tmp_path / "r", {**files, "src/app.py": "print('hi')\n"})

    found = {path: message for path, _, message in _found(root, "model-files")}
    assert set(found) == {"notes/readme.txt", "model.bin"}
    assert "pickle" in found["notes/readme.txt"] and "can run code" in found["notes/readme.txt"]


def test_a_big_binary_is_found_unless_allowed_and_a_big_text_file_is_not(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"assets/blob.dat": b"\0" + os.urandom(3000), "big.csv": "a,b\n" * 1000})
    found = _found(root, "model-files", max_bytes=2000)
    assert [(p, "over model-files.max_bytes (2000)" in m) for p, _, m in found] == [("assets/blob.dat", True)]
    assert _found(root, "model-files", max_bytes=2000, allow=["assets/*"]) == []


def test_files_dvc_tracks_are_not_in_git_and_not_found(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {".gitignore": "/data/model.pkl\n", "data/model.pkl.dvc": "outs: []\n"})
    (root / "data/model.pkl").write_bytes(pickle.dumps([1]))
    assert _found(root, "model-files") == []


def test_a_shell_call_is_a_code_finding_with_its_line_and_tests_are_excluded(tmp_path: Path) -> None:
    risky = "import subprocess\n\n\ndef go(x):\n    return subprocess.call(x, shell=True)\n"
    root = make_repo(
        tmp_path / "r", {"pkg/run.py": risky, "tests/test_run.py": "def test_x():\n    assert True\n"}
    )
    found = _found(root, "code")
    assert [(p, line) for p, line, _ in found] == [("pkg/run.py", 5)]
    assert found[0][2].startswith("S602")


def test_a_justified_rule_is_not_a_code_finding(tmp_path: Path) -> None:
    justified = (
        "import subprocess\n\n\ndef go(x):\n    return subprocess.call(x, shell=True)  # noqa: S602 - fixed\n"
    )
    root = make_repo(tmp_path / "r", {"pkg/run.py": justified})
    assert _found(root, "code") == []


def _template(root: Path, name: str, source: str, variables: list[str] | None) -> dict[str, str]:
    files = {f"prompts/{name}.j2": source}
    if variables is not None:
        files[f"prompts/{name}.yaml"] = f"variables: {variables}\n"
    return files


def test_templates_with_undeclared_variables_pii_or_no_declaration_are_findings(tmp_path: Path) -> None:
    files = {
        **_template(tmp_path, "ok", "Answer {{ question }} for {{ customer }}.", ["question", "customer"]),
        **_template(tmp_path, "undeclared", "Hello {{ name }}, about {{ order_id }}", ["name"]),
        **_template(tmp_path, "email", "Write to ops-team@example.com about {{ topic }}", ["topic"]),
        **_template(tmp_path, "bare", "{{ x }}", None),
    }
    root = make_repo(tmp_path / "r", files)
    found = _found(root, "templates")
    by_path = {p: m for p, _, m in found}
    assert "prompts/ok.j2" not in by_path
    assert by_path["prompts/undeclared.j2"] == "used but not declared: ['order_id']"
    assert by_path["prompts/email.j2"] == "an email address in the template"
    assert by_path["prompts/bare.j2"] == "no declaration of its variables"
    assert not any("ops-team" in m for _, _, m in found)


def test_a_template_over_its_budget_or_holding_a_key_is_a_finding(tmp_path: Path) -> None:
    files = {
        **_template(tmp_path, "long", "x" * 60 + "{{ a }}", ["a"]),
        **_template(tmp_path, "key", f"use {aws_key()} for {{{{ a }}}}", ["a"]),
    }
    root = make_repo(tmp_path / "r", files)
    assert sorted(_found(root, "templates", max_chars=60)) == [
        ("prompts/key.j2", 1, "AWS Access Key in the template"),
        ("prompts/long.j2", None, "67 characters, over templates.max_chars (60)"),
    ]


def test_no_templates_folder_is_nothing_to_check(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"README.md": "hi\n"})
    assert _found(root, "templates") == []
    assert template_digests(root / "prompts") == {}


def test_template_digests_name_each_template_and_its_declaration(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", _template(tmp_path, "ok", "{{ q }}", ["q"]))
    digests = template_digests(root / "prompts")
    assert sorted(digests) == ["ok.j2", "ok.yaml"]
    assert all(len(v) == 64 for v in digests.values())


def test_pii_patterns_find_phones_and_card_numbers_but_not_ordinary_numbers() -> None:
    text = "call +1 415-555-0100\ncard 4111 1111 1111 1111\norder 1234567890123\nyear 2024, 3.14159\n"
    assert pii_in(text) == [("a phone number", 1), ("a payment-card-like number", 2)]
