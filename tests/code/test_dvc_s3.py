"""A DVC remote on S3 (moto's server): pushed through DVC, checked by md5 through DVC, outages told apart."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tasks.snapshot as snap
from attestflow.config import SnapshotConfig
from attestflow.dvc_remote import REMOTE_URL_ENV, fetch_object
from attestflow.errors import BadInputError, GateFailedError, UnavailableError
from attestflow.hash_cache import HashCache
from attestflow.records import SnapshotRecord
from attestflow.verify import check_dvc_remote
from attestflow.workspace import Workspace
from tests.s3 import S3Endpoint


@pytest.fixture
def s3_env(s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    """The test process talks to moto's server as any client would: through the environment only."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(
        "AWS_MAX_ATTEMPTS", "1"
    )  # an unreachable endpoint fails at once, not after botocore's retries
    monkeypatch.delenv(REMOTE_URL_ENV, raising=False)
    return s3


def _repo(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    data = root / "data" / "rows.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    return root, data


def _key(prefix: str, md5: str) -> str:
    return f"{prefix}/dvc/files/md5/{md5[:2]}/{md5[2:]}"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pushed(s3: S3Endpoint, tmp_path: Path) -> tuple[str, str, str]:
    """(remote URL, md5, object key) of a small table snapshotted to a fresh prefix."""
    root, data = _repo(tmp_path)
    prefix = s3.prefix()
    url = f"s3://{s3.bucket}/{prefix}/dvc"
    rec = snap.snapshot(
        SnapshotConfig(repo=root, remote_url=url), data, Workspace.at(tmp_path / "ws"), tmp_path
    )
    return url, rec.dvc_md5, _key(prefix, rec.dvc_md5)


def test_a_snapshot_pushed_to_s3_is_there_under_its_md5_with_that_etag_and_verifies(
    s3_env: S3Endpoint, tmp_path: Path
) -> None:
    root, data = _repo(tmp_path)
    prefix = s3_env.prefix()
    url = f"s3://{s3_env.bucket}/{prefix}/dvc"
    rec = snap.snapshot(
        SnapshotConfig(repo=root, remote_url=url), data, Workspace.at(tmp_path / "ws"), tmp_path
    )

    md5 = hashlib.md5(data.read_bytes()).hexdigest()
    assert rec.dvc_md5 == md5 and rec.remote_url == url
    head = s3_env.client().head_object(Bucket=s3_env.bucket, Key=_key(prefix, md5))
    assert head["ETag"].strip('"') == md5
    check = check_dvc_remote(url, md5)
    assert check.ok, check.detail
    assert "by its ETag" in check.detail
    # Endpoint and credentials came from the environment: nothing of them is written down.
    written = (root / ".dvc" / "config.local").read_text() + (root / ".dvc" / "config").read_text()
    assert url in written
    for word in ("endpointurl", "access_key", "secret", "127.0.0.1"):
        assert word not in written


def test_the_environments_remote_is_used_when_the_config_names_none_and_the_config_wins_over_it(
    s3_env: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, data = _repo(tmp_path)
    env_url = f"s3://{s3_env.bucket}/{s3_env.prefix()}/dvc"
    monkeypatch.setenv(REMOTE_URL_ENV, env_url)
    ws = Workspace.at(tmp_path / "ws")
    rec = snap.snapshot(SnapshotConfig(repo=root), data, ws, tmp_path / "a")
    assert rec.remote_url == env_url and check_dvc_remote(env_url, rec.dvc_md5).ok

    local = tmp_path / "local-remote"
    again = snap.snapshot(SnapshotConfig(repo=root, remote_url=str(local)), data, ws, tmp_path / "b")
    assert again.remote_url == str(local) and check_dvc_remote(str(local), again.dvc_md5).ok


def test_an_object_deleted_from_s3_fails_the_data_check_naming_its_md5(
    s3_env: S3Endpoint, tmp_path: Path
) -> None:
    url, md5, key = _pushed(s3_env, tmp_path)
    s3_env.client().delete_object(Bucket=s3_env.bucket, Key=key)
    check = check_dvc_remote(url, md5)
    assert not check.ok
    assert f"DVC object {md5} is not in the remote {url}" in check.detail


def test_an_object_whose_content_was_replaced_fails_the_data_check(
    s3_env: S3Endpoint, tmp_path: Path
) -> None:
    url, md5, key = _pushed(s3_env, tmp_path)
    s3_env.client().put_object(Bucket=s3_env.bucket, Key=key, Body=b"a,b\n1,2\n3,5\n")
    check = check_dvc_remote(url, md5)
    assert not check.ok and f"DVC object {md5} in the remote {url} does not have that md5" in check.detail
    with pytest.raises(GateFailedError, match="does not have that md5"):
        fetch_object(url, md5, tmp_path / "copy.csv")
    assert not (tmp_path / "copy.csv").exists()


def _multipart(s3: S3Endpoint, key: str, body: bytes) -> str:
    client = s3.client()
    upload = client.create_multipart_upload(Bucket=s3.bucket, Key=key)
    part = client.upload_part(Bucket=s3.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=body)
    client.complete_multipart_upload(
        Bucket=s3.bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    return str(client.head_object(Bucket=s3.bucket, Key=key)["ETag"]).strip('"')


def test_a_multipart_etag_is_no_md5_so_the_object_is_re_hashed(s3_env: S3Endpoint, tmp_path: Path) -> None:
    url, md5, key = _pushed(s3_env, tmp_path)
    original = s3_env.client().get_object(Bucket=s3_env.bucket, Key=key)["Body"].read()
    assert _multipart(s3_env, key, original).endswith("-1")
    check = check_dvc_remote(url, md5)
    assert check.ok and "re-hashed" in check.detail, check.detail

    assert _multipart(s3_env, key, original + b"5,6\n").endswith("-1")
    check = check_dvc_remote(url, md5)
    assert not check.ok and "does not have that md5" in check.detail


def test_a_directory_snapshot_on_s3_checks_each_of_its_files(s3_env: S3Endpoint, tmp_path: Path) -> None:
    root, _ = _repo(tmp_path)
    folder = root / "data" / "shards"
    folder.mkdir()
    for i in range(3):
        (folder / f"part-{i}.csv").write_text(f"a,b\n{i},{i + 1}\n")
    prefix = s3_env.prefix()
    url = f"s3://{s3_env.bucket}/{prefix}/dvc"
    rec = snap.snapshot(
        SnapshotConfig(repo=root, remote_url=url), folder, Workspace.at(tmp_path / "ws"), tmp_path
    )
    assert rec.dvc_md5.endswith(".dir")
    check = check_dvc_remote(url, rec.dvc_md5)
    assert check.ok and "3 file(s)" in check.detail, check.detail

    part = hashlib.md5((folder / "part-1.csv").read_bytes()).hexdigest()
    s3_env.client().put_object(Bucket=s3_env.bucket, Key=_key(prefix, part), Body=b"swapped")
    check = check_dvc_remote(url, rec.dvc_md5)
    assert not check.ok and "1 file(s) of the snapshot" in check.detail and "part-1.csv" in check.detail


def test_an_unreachable_s3_endpoint_fails_the_data_check_saying_it_cannot_reach_it(
    s3_env: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, md5, _ = _pushed(s3_env, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_dead_port()}")
    check = check_dvc_remote(url, md5)
    assert not check.ok and f"cannot reach the DVC remote {url}" in check.detail, check.detail
    with pytest.raises(UnavailableError, match="could not be reached"):
        fetch_object(url, md5, tmp_path / "copy.csv")


def test_missing_credentials_are_bad_input_not_an_outage(
    s3_env: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, data = _repo(tmp_path)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    cfg = SnapshotConfig(repo=root, remote_url=f"s3://{s3_env.bucket}/{s3_env.prefix()}/dvc")
    with pytest.raises(BadInputError, match="refused the request or is misconfigured"):
        snap.snapshot(cfg, data, Workspace.at(tmp_path / "ws"), tmp_path)


class _LateProxy:
    """A TCP proxy to the S3 endpoint, refusing connections until `start`: an endpoint that is down."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.port = _dead_port()
        self._server: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def start_after(self, seconds: float) -> None:
        threading.Timer(seconds, self.start).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def endpoint_down(s3_env: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[_LateProxy]:
    proxy = _LateProxy(s3_env.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    yield proxy
    proxy.stop()


def test_a_snapshot_while_s3_is_down_is_an_outage_and_records_nothing(
    s3_env: S3Endpoint, endpoint_down: _LateProxy, tmp_path: Path
) -> None:
    root, data = _repo(tmp_path)
    prefix = s3_env.prefix()
    cfg = SnapshotConfig(repo=root, remote_url=f"s3://{s3_env.bucket}/{prefix}/dvc")
    ws = Workspace.at(tmp_path / "ws")
    with pytest.raises(UnavailableError, match="could not be reached") as raised:
        snap.snapshot(cfg, data, ws, tmp_path / "out")
    assert not isinstance(raised.value, BadInputError)
    assert not (tmp_path / "out" / "data_manifest.json").exists()
    assert HashCache.of(ws, data.resolve()).last == {}
    assert s3_env.client().list_objects_v2(Bucket=s3_env.bucket, Prefix=prefix).get("KeyCount") == 0

    endpoint_down.start()
    rec = snap.snapshot(cfg, data, ws, tmp_path / "out")
    assert check_dvc_remote(str(rec.remote_url), rec.dvc_md5).ok


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_the_snapshot_stage_is_retried_while_s3_is_down_for_a_few_seconds(
    s3_env: S3Endpoint,
    endpoint_down: _LateProxy,
    tmp_path: Path,
    prefect_harness: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect import flow

    from flows.stages import stage

    root, data = _repo(tmp_path)
    url = f"s3://{s3_env.bucket}/{s3_env.prefix()}/dvc"
    cfg = SnapshotConfig(repo=root, remote_url=url, retries=5, retry_delay_s=1)
    tries: list[str] = []
    real = snap._snapshot_with_dvc

    def counted(*args: Any) -> Any:
        try:
            result = real(*args)
        except Exception as e:
            if not tries:
                endpoint_down.start_after(2)  # back a few seconds after the first try failed
            tries.append(type(e).__name__)
            raise
        tries.append("pushed")
        return result

    monkeypatch.setattr(snap, "_snapshot_with_dvc", counted)

    @flow(name="snapshot-while-s3-is-down")
    def run() -> SnapshotRecord:
        return stage(snap.snapshot_task, cfg)(cfg, data, Workspace.at(tmp_path / "ws"), tmp_path / "out")

    started = time.monotonic()
    rec = run()
    assert tries[0] == "UnavailableError" and tries[-1] == "pushed", tries
    assert set(tries[:-1]) == {"UnavailableError"}
    assert time.monotonic() - started < 90
    assert rec.remote_url == url and check_dvc_remote(url, rec.dvc_md5).ok


def test_the_drift_reference_is_fetched_through_dvc_with_its_md5_checked(
    s3_env: S3Endpoint, tmp_path: Path
) -> None:
    url, md5, _ = _pushed(s3_env, tmp_path)
    copy = fetch_object(url, md5, tmp_path / "reference.csv")
    assert hashlib.md5(copy.read_bytes()).hexdigest() == md5
    with pytest.raises(BadInputError, match=f"DVC object {'0' * 32} is not in the DVC remote"):
        fetch_object(url, "0" * 32, tmp_path / "missing.csv")


def test_a_local_remote_is_found_through_dvc_too(tmp_path: Path) -> None:
    root, data = _repo(tmp_path)
    remote = tmp_path / "remote"
    rec = snap.snapshot(
        SnapshotConfig(repo=root, remote_url=str(remote)), data, Workspace.at(tmp_path / "ws"), tmp_path
    )
    check = check_dvc_remote(remote.as_uri(), rec.dvc_md5)
    assert check.ok and "re-hashed" in check.detail
    obj = next(p for p in (remote / "files" / "md5").rglob("*") if p.is_file())
    obj.chmod(0o644)
    obj.write_text("a,b\n9,9\n")
    assert "does not have that md5" in check_dvc_remote(str(remote), rec.dvc_md5).detail
    shutil.rmtree(remote)
    assert "cannot reach the DVC remote" in check_dvc_remote(str(remote), rec.dvc_md5).detail
