"""Re-checking an unchanged snapshot reads no file again and runs no DVC; any change does."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import attestflow.hash_cache as hash_cache
import tasks.snapshot as snap
from attestflow.config import SnapshotConfig
from attestflow.workspace import Workspace
from tests.conftest import ExampleRepo


def _folder(example_repo: ExampleRepo) -> Path:
    folder = example_repo.root / "data" / "shards"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        shutil.copy(example_repo.data, folder / f"part-{i}.csv")
    # Names whose string order differs from their order by path parts ("a-b" < "a/b").
    (folder / "sub-x.csv").write_text("x\n1\n")
    (folder / "sub" / "y.csv").write_text("y\n2\n")
    return folder


def _count_dvc_runs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    runs: list[Path] = []
    real = snap._snapshot_with_dvc

    def counted(*args: Any) -> Any:
        runs.append(args[2])
        return real(*args)

    monkeypatch.setattr(snap, "_snapshot_with_dvc", counted)
    return runs


def test_our_folder_md5_is_the_one_dvc_writes(example_repo: ExampleRepo, tmp_path: Path) -> None:
    folder = _folder(example_repo)
    ws = Workspace.at(example_repo.workspace)
    rec = snap.snapshot(SnapshotConfig(repo=example_repo.root), folder, ws, tmp_path / "o")
    written = yaml.safe_load(rec.dvc_file.read_text())["outs"][0]["md5"]
    hashes = snap.HashCache.of(ws, folder.resolve()).hash(folder.resolve())
    assert rec.dvc_md5 == written == snap.dvc_tree_md5(hashes, is_dir=True)
    assert hashes["sub/y.csv"].md5 == hashlib.md5(b"y\n2\n").hexdigest()


def test_unchanged_data_runs_no_dvc_and_reads_no_file(
    example_repo: ExampleRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(example_repo)
    ws = Workspace.at(example_repo.workspace)
    cfg = SnapshotConfig(repo=example_repo.root)
    runs = _count_dvc_runs(monkeypatch)
    first = snap.snapshot(cfg, folder, ws, tmp_path / "a")
    assert len(runs) == 1

    read: list[str] = []
    real_hash_many = hash_cache._hash_many

    def counted(files: list[str], *args: Any) -> Any:
        read.extend(files)
        return real_hash_many(files, *args)

    monkeypatch.setattr(hash_cache, "_hash_many", counted)
    second = snap.snapshot(cfg, folder, ws, tmp_path / "b")
    assert len(runs) == 1 and read == []
    assert (second.dvc_md5, second.dvc_file, second.remote_url) == (
        first.dvc_md5,
        first.dvc_file,
        first.remote_url,
    )
    assert second.manifest_digest == first.manifest_digest
    assert second.size_bytes == first.size_bytes

    # Same size, new content: only that file is read again, and DVC records the new md5.
    part = folder / "part-1.csv"
    data = bytearray(part.read_bytes())
    data[-2] = ord("7") if data[-2] != ord("7") else ord("8")
    part.write_bytes(bytes(data))
    third = snap.snapshot(cfg, folder, ws, tmp_path / "c")
    assert read == [str(part.resolve())]
    assert len(runs) == 2 and third.dvc_md5 != first.dvc_md5
    assert third.dvc_md5 == yaml.safe_load(third.dvc_file.read_text())["outs"][0]["md5"]


def test_an_object_missing_from_the_remote_is_pushed_again(
    example_repo: ExampleRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.at(example_repo.workspace)
    cfg = SnapshotConfig(repo=example_repo.root)
    runs = _count_dvc_runs(monkeypatch)
    rec = snap.snapshot(cfg, example_repo.data, ws, tmp_path / "a")
    obj = ws.dvc_remote / "files" / "md5" / rec.dvc_md5[:2] / rec.dvc_md5[2:]
    os.chmod(obj, 0o644)
    obj.unlink()
    snap.snapshot(cfg, example_repo.data, ws, tmp_path / "b")
    assert len(runs) == 2
    assert obj.is_file()


def test_a_changed_dvc_config_or_remote_runs_dvc_again(
    example_repo: ExampleRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.at(example_repo.workspace)
    runs = _count_dvc_runs(monkeypatch)
    snap.snapshot(SnapshotConfig(repo=example_repo.root), example_repo.data, ws, tmp_path / "a")
    other = tmp_path / "other-remote"
    rec = snap.snapshot(
        SnapshotConfig(repo=example_repo.root, remote_url=str(other)), example_repo.data, ws, tmp_path / "b"
    )
    assert len(runs) == 2
    assert rec.remote_url == str(other)
    assert (other / "files" / "md5" / rec.dvc_md5[:2] / rec.dvc_md5[2:]).is_file()
    with (example_repo.root / ".dvc" / "config").open("a") as f:
        f.write("[state]\n    row_limit = 1000000\n")
    snap.snapshot(
        SnapshotConfig(repo=example_repo.root, remote_url=str(other)), example_repo.data, ws, tmp_path / "c"
    )
    assert len(runs) == 3


def test_a_rewrite_that_restores_the_mtime_is_still_seen(example_repo: ExampleRepo, tmp_path: Path) -> None:
    ws = Workspace.at(example_repo.workspace)
    cfg = SnapshotConfig(repo=example_repo.root, push=False)
    first = snap.snapshot(cfg, example_repo.data, ws, tmp_path / "a")
    st = example_repo.data.stat()
    data = bytearray(example_repo.data.read_bytes())
    data[-2] = ord("7") if data[-2] != ord("7") else ord("8")
    example_repo.data.write_bytes(bytes(data))
    os.utime(example_repo.data, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = snap.snapshot(cfg, example_repo.data, ws, tmp_path / "b")
    assert second.dvc_md5 == hashlib.md5(bytes(data)).hexdigest() != first.dvc_md5
