"""A DVC remote that cannot be reached is an outage (exit 3) for the snapshot, and a failed check for verify."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attestflow.config import SnapshotConfig
from attestflow.dvc import dvc_md5
from attestflow.errors import BadInputError, UnavailableError
from attestflow.verify import check_dvc_remote
from attestflow.workspace import Workspace
from tasks.snapshot import snapshot


def _repo(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    data = root / "data" / "rows.csv"
    data.write_text("a,b\n1,2\n")
    return root, data


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("remote", ["a local folder under a file", "a closed port"])
def test_a_push_to_an_unreachable_remote_is_unavailable_not_bad_input(tmp_path: Path, remote: str) -> None:
    root, data = _repo(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    url = {
        "a local folder under a file": str(tmp_path / "a-file" / "remote"),
        "a closed port": f"http://user:secret@127.0.0.1:{_closed_port()}/remote",
    }[remote]
    cfg = SnapshotConfig(repo=root, remote_url=url)
    started = time.perf_counter()
    with pytest.raises(UnavailableError, match="the DVC remote 'local'") as raised:
        snapshot(cfg, data, Workspace.at(tmp_path / "ws"), tmp_path / "out")
    assert time.perf_counter() - started < 60
    assert not isinstance(raised.value, BadInputError) and "secret" not in str(raised.value)


def test_dvc_md5_is_the_md5_dvc_records_without_tracking(tmp_path: Path) -> None:
    root, data = _repo(tmp_path)
    assert dvc_md5(root, data) == hashlib.md5(data.read_bytes()).hexdigest()
    assert not data.with_name("rows.csv.dvc").exists()
    with pytest.raises(BadInputError, match="data not found"):
        dvc_md5(root, root / "data" / "missing.csv")


def test_a_dvc_remote_that_cannot_be_reached_fails_the_data_check_saying_so(tmp_path: Path) -> None:
    check = check_dvc_remote(str(tmp_path / "gone"), "0" * 32)
    assert not check.ok and "cannot reach the DVC remote" in check.detail
    (tmp_path / "remote").mkdir()
    missing = check_dvc_remote((tmp_path / "remote").as_uri(), "0" * 32)
    assert not missing.ok and "is not in the remote" in missing.detail
