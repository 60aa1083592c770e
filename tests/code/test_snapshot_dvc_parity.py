"""The snapshot's own cache filling and linked push decide what DVC alone decides, and DVC accepts what they leave."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import attestflow.dvc as dvc_ops
from attestflow.config import SnapshotConfig
from attestflow.workspace import Workspace
from tasks.snapshot import snapshot


def _dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, check=True, capture_output=True, text=True
    )


def _repo(root: Path) -> Path:
    """A DVC repo (no git) with a folder of a few files, one of them in a sub-folder."""
    root.mkdir(parents=True)
    _dvc(root, "init", "--no-scm", "-q")
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    for i in range(4):
        (data / f"part-{i}.bin").write_bytes(os.urandom(5000 + i))
    (data / "sub" / "y.csv").write_text("y\n2\n")
    return data


def _plain_dvc_md5(data: Path, scratch: Path) -> str:
    """The md5 `dvc add` writes for a copy of `data` in a plain repo of its own."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir()
    _dvc(scratch, "init", "--no-scm", "-q")
    shutil.copytree(data, scratch / "data")
    _dvc(scratch, "add", "data")
    return str(yaml.safe_load((scratch / "data.dvc").read_text())["outs"][0]["md5"])


def _snap(root: Path, data: Path, ws: Workspace, out: Path) -> Any:
    return snapshot(SnapshotConfig(repo=root), data, ws, out)


def test_the_snapshot_md5_is_dvcs_own_on_new_changed_and_unchanged_data(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    data = _repo(root)
    ws = Workspace.at(tmp_path / "ws")
    new = _snap(root, data, ws, tmp_path / "a")
    assert new.dvc_md5 == _plain_dvc_md5(data, tmp_path / "plain")
    (data / "part-1.bin").write_bytes(os.urandom(6000))
    (data / "sub" / "z.csv").write_text("z\n3\n")
    changed = _snap(root, data, ws, tmp_path / "b")
    assert changed.dvc_md5 != new.dvc_md5
    assert changed.dvc_md5 == _plain_dvc_md5(data, tmp_path / "plain")
    unchanged = _snap(root, data, ws, tmp_path / "c")
    assert unchanged.dvc_md5 == changed.dvc_md5 == _plain_dvc_md5(data, tmp_path / "plain")
    assert "modified" not in _dvc(root, "status").stdout


def test_a_linked_push_leaves_a_remote_dvc_reports_complete_and_pulls_from(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    data = _repo(root)
    ws = Workspace.at(tmp_path / "ws")
    rec = _snap(root, data, ws, tmp_path / "a")
    remote = ws.dvc_remote
    cached = root / ".dvc" / "cache" / "files" / "md5" / rec.dvc_md5[:2] / rec.dvc_md5[2:]
    pushed = remote / "files" / "md5" / rec.dvc_md5[:2] / rec.dvc_md5[2:]
    assert os.path.samefile(cached, pushed)  # linked, not copied
    assert "new" not in _dvc(root, "status", "-c", "-r", "local").stdout.lower()
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copytree(root / ".dvc", clone / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    shutil.copy(root / "data.dvc", clone / "data.dvc")
    _dvc(clone, "pull", "-r", "local")
    for f in data.rglob("*"):
        if f.is_file():
            assert (clone / "data" / f.relative_to(data)).read_bytes() == f.read_bytes()


def test_a_remote_that_cannot_be_linked_to_is_pushed_by_dvc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "repo"
    data = _repo(root)
    ws = Workspace.at(tmp_path / "ws")

    def cross_device(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(dvc_ops, "_linker", lambda *a: cross_device)
    rec = _snap(root, data, ws, tmp_path / "a")
    pushed = ws.dvc_remote / "files" / "md5" / rec.dvc_md5[:2] / rec.dvc_md5[2:]
    cached = root / ".dvc" / "cache" / "files" / "md5" / rec.dvc_md5[:2] / rec.dvc_md5[2:]
    assert pushed.is_file() and not os.path.samefile(cached, pushed)
    assert "new" not in _dvc(root, "status", "-c", "-r", "local").stdout.lower()
