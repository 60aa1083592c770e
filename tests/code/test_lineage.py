"""The code revision recorded in provenance, what counts as a dirty work tree, and who acted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from attestflow.audit import AuditLog
from attestflow.lineage import actor, code_revision
from tests.conftest import ExampleRepo


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


def _repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / ".gitignore").write_text("*.log\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path


def test_an_untracked_module_makes_the_tree_dirty_and_its_content_counts(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    clean = code_revision(repo)
    assert not clean.dirty and clean.version == clean.commit
    (repo / "ignored.log").write_text("noise\n")
    assert not code_revision(repo).dirty
    (repo / "pkg").mkdir()
    (repo / "pkg" / "my_adapter.py").write_text("class MyAdapter: ...\n")
    first = code_revision(repo)
    assert first.dirty and first.version.startswith(f"{clean.commit}+")
    (repo / "pkg" / "my_adapter.py").write_text("class MyAdapter: pass\n")
    second = code_revision(repo)
    assert second.dirty and second.changes != first.changes and second.version != first.version


def test_untracked_data_owned_by_dvc_is_not_code(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "data").mkdir()
    (repo / "data" / "new.csv").write_text("a\n1\n")
    (repo / "new.dvc").write_text("outs: []\n")
    assert not code_revision(repo).dirty


def test_an_untracked_module_refuses_the_release_without_allow_dirty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example_repo: ExampleRepo
) -> None:
    import attestflow.context as context_module
    from attestflow.errors import GateFailedError

    (tmp_path / "code").mkdir()
    repo = _repo(tmp_path / "code")
    (repo / "my_adapter.py").write_text("class MyAdapter: ...\n")
    monkeypatch.setattr(context_module, "CODE_ROOT", repo)
    config = example_repo.write_config("strict.yaml", sign={"allow_dirty": False})
    with pytest.raises(GateFailedError, match="has uncommitted changes"):
        context_module.open_release(config, [], flow_run_id="r1")
    (failed,) = AuditLog.of(example_repo.workspace).entries()
    assert failed["event"] == "release_failed"
    assert (failed["details"]["stage"], failed["details"]["exit_code"]) == ("start", 1)
    assert "has uncommitted changes" in failed["details"]["reason"]


def test_an_untracked_module_changes_the_release_key(tmp_path: Path) -> None:
    from tasks.sign import code_inputs, release_key

    repo = _repo(tmp_path)
    clean = code_revision(repo)
    (repo / "my_adapter.py").write_text("class MyAdapter: ...\n")
    dirty = code_revision(repo)
    (repo / "my_adapter.py").write_text("class MyAdapter: pass\n")
    edited = code_revision(repo)
    keys = {release_key({"data_md5": "d", **code_inputs(r)}) for r in (clean, dirty, edited)}
    assert len(keys) == 3
    assert code_inputs(clean) == {"git_commit": clean.commit}
