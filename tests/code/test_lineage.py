"""The code revision recorded in provenance, what counts as a dirty work tree, and who acted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from attestflow.audit import AuditLog
from attestflow.lineage import actor, code_revision


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_code_changes_are_dirty_but_dvc_owned_files_are_not(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = code_revision(tmp_path)
    assert len(clean.commit) == 40 and not clean.dirty
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    assert not code_revision(tmp_path).dirty
    (tmp_path / "code.py").write_text("x = 2\n")
    assert code_revision(tmp_path).dirty


def test_outside_git_the_revision_is_unknown(tmp_path: Path) -> None:
    assert code_revision(tmp_path).commit == "unknown"


def test_the_audit_log_and_the_provenance_name_the_same_actor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTESTFLOW_ACTOR", "alice")
    assert actor() == "user:alice"
    assert AuditLog.of(tmp_path).append("run_started")["actor"] == "user:alice"


def test_an_actor_that_says_its_kind_is_kept_and_a_bare_name_is_a_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ATTESTFLOW_ACTOR", "prefect-deployment:nightly")
    assert actor() == "prefect-deployment:nightly"
    assert actor("policy:auto") == "policy:auto"
    assert actor("bob") == "user:bob"
    monkeypatch.delenv("ATTESTFLOW_ACTOR")
    assert actor().startswith("user:")
