"""The secrets check's cache: an unchanged file is not scanned again, and the cache never changes a result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attestflow.checks.config import CheckConfig
from attestflow.checks.runner import run_checks
from attestflow.checks.secrets_cache import CACHE_DIR
from tests.code.gitrepos import aws_key, commit, git, make_repo


def _secrets(root: Path) -> list[tuple[str | None, int | None, str]]:
    return [(f.path, f.line, f.message) for f in run_checks(root, None, CheckConfig(), ["secrets"])]


def _cache_file(root: Path) -> Path:
    (only,) = (root / CACHE_DIR).glob("secrets-*.json")
    return only


def _scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files detect-secrets scans from now on."""
    from detect_secrets import SecretsCollection

    scanned: list[str] = []
    real = SecretsCollection.scan_file

    def counting(self: SecretsCollection, filename: str) -> None:
        scanned.append(filename)
        real(self, filename)

    monkeypatch.setattr(SecretsCollection, "scan_file", counting)
    return scanned


def test_an_unchanged_file_is_not_scanned_again_and_its_secret_is_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = aws_key()
    root = make_repo(tmp_path / "r", {"app.py": f"KEY = '{key}'\n", "b.py": "x = 1\n"})
    first = _secrets(root)
    assert first == [("app.py", 1, "AWS Access Key in the file")]

    scanned = _scans(monkeypatch)
    assert _secrets(root) == first
    assert scanned == []
    cache = _cache_file(root).read_text()
    assert key not in cache and key[4:] not in cache
    assert git(root, "status", "--porcelain") == ""  # the cache folder ignores itself

    commit(root, {"b.py": f"x = 1\nOTHER = '{aws_key()}'\n"}, "a second key")
    assert [(p, ln) for p, ln, _ in _secrets(root)] == [("app.py", 1), ("b.py", 2)]
    assert scanned == ["b.py"]


def test_a_corrupt_cache_is_ignored_and_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_repo(tmp_path / "r", {"app.py": f"KEY = '{aws_key()}'\n"})
    assert len(_secrets(root)) == 1
    cache = _cache_file(root)
    cache.write_text('{"format": 1, "files": {"app.py": ')
    assert len(_secrets(root)) == 1
    assert json.loads(cache.read_text())["files"]["app.py"]["found"][0][1] == 1

    scanned = _scans(monkeypatch)
    assert len(_secrets(root)) == 1 and scanned == []


def test_a_cache_committed_to_git_is_not_believed(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"app.py": f"KEY = '{aws_key()}'\n"})
    assert len(_secrets(root)) == 1
    cache = _cache_file(root)
    poisoned = json.loads(cache.read_text())
    poisoned["files"]["app.py"]["found"] = []
    cache.write_text(json.dumps(poisoned))
    git(root, "add", "-f", "--", str(cache))
    git(root, "commit", "-q", "-m", "a cache that says the key is not there")

    assert ("app.py", 1, "AWS Access Key in the file") in _secrets(root)


def test_a_cache_of_other_detect_secrets_settings_is_a_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(tmp_path / "r", {"app.py": f"KEY = '{aws_key()}'\n"})
    assert len(_secrets(root)) == 1
    cache = _cache_file(root)
    other = json.loads(cache.read_text())
    other["scanner"] = "0" * 64
    other["files"]["app.py"]["found"] = []
    cache.write_text(json.dumps(other))

    scanned = _scans(monkeypatch)
    assert len(_secrets(root)) == 1 and scanned == ["app.py"]
