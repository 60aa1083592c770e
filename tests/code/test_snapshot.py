"""The snapshot stage records DVC's own md5, pushes to the remote, and hashes every file."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from attestflow.config import SnapshotConfig
from attestflow.errors import BadInputError
from attestflow.hash_cache import sha256_manifest
from attestflow.workspace import Workspace
from tasks.snapshot import snapshot
from tests.conftest import ExampleRepo


def _remote_has(remote: Path, md5: str) -> bool:
    return (remote / "files" / "md5" / md5[:2] / md5[2:]).is_file()


def test_snapshot_of_a_file_matches_dvc_and_is_pushed(example_repo: ExampleRepo, tmp_path: Path) -> None:
    ws = Workspace.at(example_repo.workspace)
    rec = snapshot(SnapshotConfig(repo=example_repo.root), example_repo.data, ws, tmp_path / "out")
    assert rec.dvc_md5 == hashlib.md5(example_repo.data.read_bytes()).hexdigest()
    dvc_file = yaml.safe_load(rec.dvc_file.read_text())
    assert dvc_file["outs"][0]["md5"] == rec.dvc_md5
    assert _remote_has(ws.dvc_remote, rec.dvc_md5)
    manifest = json.loads(rec.manifest_path.read_text())
    assert manifest["files"] == {"credit.csv": hashlib.sha256(example_repo.data.read_bytes()).hexdigest()}


def test_snapshot_md5_changes_when_the_data_changes(example_repo: ExampleRepo, tmp_path: Path) -> None:
    ws = Workspace.at(example_repo.workspace)
    cfg = SnapshotConfig(repo=example_repo.root, push=False)
    first = snapshot(cfg, example_repo.data, ws, tmp_path / "a")
    with example_repo.data.open("a") as f:
        f.write("30,40.0,0.1,0.1,0,2.0,10.0,A,0\n")
    second = snapshot(cfg, example_repo.data, ws, tmp_path / "b")
    assert first.dvc_md5 != second.dvc_md5
    assert second.remote is None


def test_snapshot_of_a_folder_uses_dvc_dir_md5(example_repo: ExampleRepo, tmp_path: Path) -> None:
    folder = example_repo.root / "data" / "shards"
    folder.mkdir()
    for i in range(3):
        shutil.copy(example_repo.data, folder / f"part-{i}.csv")
    ws = Workspace.at(example_repo.workspace)
    rec = snapshot(SnapshotConfig(repo=example_repo.root), folder, ws, tmp_path / "out")
    assert rec.dvc_md5.endswith(".dir")
    assert rec.files == 3
    assert sha256_manifest(folder).keys() == {"part-0.csv", "part-1.csv", "part-2.csv"}
    assert _remote_has(ws.dvc_remote, rec.dvc_md5)


def test_snapshot_of_a_pipeline_output_reads_dvc_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import make_example_repo

    repo = make_example_repo(tmp_path / "repo", rows=300)
    (repo.root / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "copy": {
                        "cmd": "cp data/credit.csv data/copy.csv",
                        "deps": ["data/credit.csv"],
                        "outs": ["data/copy.csv"],
                    }
                }
            }
        )
    )
    from dvc.repo import Repo

    monkeypatch.chdir(repo.root)
    with Repo(str(repo.root)) as r:
        r.reproduce()
    ws = Workspace.at(repo.workspace)
    rec = snapshot(
        SnapshotConfig(repo=repo.root, push=False), repo.root / "data/copy.csv", ws, tmp_path / "o"
    )
    lock = yaml.safe_load((repo.root / "dvc.lock").read_text())
    assert rec.dvc_file.name == "dvc.lock"
    assert rec.dvc_md5 == lock["stages"]["copy"]["outs"][0]["md5"]


def test_snapshot_refuses_missing_data_and_non_dvc_repos(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    with pytest.raises(BadInputError, match="data not found"):
        snapshot(SnapshotConfig(repo=tmp_path), tmp_path / "nope.csv", ws, tmp_path / "o")
    (tmp_path / "x.csv").write_text("a\n1\n")
    with pytest.raises(BadInputError, match="not a DVC repository"):
        snapshot(SnapshotConfig(repo=tmp_path), tmp_path / "x.csv", ws, tmp_path / "o")
