"""The audit log on shared storage: one hash chain in S3 that workers with separate workspaces append to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from attestflow.audit import AuditLog
from attestflow.audit_store import ENV, FileStore, S3Store, audit_location, open_store
from attestflow.config import ReleaseConfig
from attestflow.errors import BadInputError, UnavailableError
from attestflow.keys import ensure_keypair
from tests.s3 import S3Endpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def s3_env(s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return s3


@pytest.fixture
def shared(s3_env: S3Endpoint, tmp_path: Path) -> tuple[str, str]:
    """An audit location (``s3://BUCKET/PREFIX/``) and the key of the log object in it."""
    prefix = s3_env.prefix()
    return f"s3://{s3_env.bucket}/{prefix}/", f"{prefix}/audit.jsonl"


def _log(tmp_path: Path, location: str, name: str = "ws") -> AuditLog:
    keys = ensure_keypair(tmp_path / "release-key")  # every worker signs with the one release key
    return AuditLog.of(tmp_path / name, keys.private_key, keys.public_key, location)


def test_one_function_decides_where_the_log_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert audit_location(None) is None
    assert open_store(None, tmp_path) == FileStore(tmp_path / "audit.jsonl")
    monkeypatch.setenv(ENV, "s3://bucket/audit/")
    assert audit_location(None) == "s3://bucket/audit/"
    assert audit_location("/shared/audit") == "/shared/audit"  # the config wins over the environment
    assert open_store("s3://bucket/audit/", tmp_path) == S3Store("bucket", "audit/audit.jsonl")
    assert open_store("s3://bucket", tmp_path) == S3Store("bucket", "audit.jsonl")
    assert open_store(str(tmp_path / "team"), tmp_path) == FileStore(tmp_path / "team" / "audit.jsonl")
    assert open_store(str(tmp_path / "x.jsonl"), tmp_path) == FileStore(tmp_path / "x.jsonl")
    assert AuditLog.configured(_config({"location": "s3://cfg/a/"}), tmp_path).store == S3Store(
        "cfg", "a/audit.jsonl"
    )
    assert AuditLog.configured(_config({}), tmp_path).store == S3Store("bucket", "audit/audit.jsonl")


def _config(audit: dict[str, str]) -> ReleaseConfig:
    return ReleaseConfig.model_validate(
        {"model_name": "m", "data": {"path": "d.csv", "label": "y", "features": ["a"]},
         "validate_data": {"suite": "s.yaml"}, "fine_tune": {}, "audit": audit}
    )  # fmt: skip


def test_a_location_that_is_neither_a_folder_nor_s3_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BadInputError, match="names no bucket"):
        open_store("s3:///audit/", tmp_path)
    monkeypatch.setenv(ENV, "gs://bucket/audit/")
    with pytest.raises(BadInputError, match="'gs://bucket/audit/' is neither a folder nor s3://"):
        AuditLog.configured(_config({}), tmp_path)  # refused when the release opens, before any stage


def test_appends_to_an_s3_log_form_a_signed_chain_that_verifies(
    s3_env: S3Endpoint, shared: tuple[str, str], tmp_path: Path
) -> None:
    location, key = shared
    log = _log(tmp_path, location)
    for n in range(3):
        log.append("promotion", model="m", version=str(n + 1), alias="champion")
    assert log.verify() == (True, None, "3 entries, chain intact")
    assert [e["version"] for e in log.entries()] == ["1", "2", "3"]
    client = s3_env.client()
    lines = client.get_object(Bucket=s3_env.bucket, Key=key)["Body"].read().decode().splitlines()
    head = json.loads(client.get_object(Bucket=s3_env.bucket, Key=key + ".head")["Body"].read())
    assert len(lines) == 3 and head["seq"] == 3 and "envelope" in head
    assert not (tmp_path / "ws" / "audit.jsonl").exists()  # nothing in the workspace
    # A second workspace with only the location and the public key reads and verifies the same chain.
    reader = AuditLog.of(tmp_path / "empty", public_key=log.key.public_key, location=location)
    assert reader.verify()[0] and len(reader.entries()) == 3


def test_a_tampered_s3_entry_breaks_verification(
    s3_env: S3Endpoint, shared: tuple[str, str], tmp_path: Path
) -> None:
    location, key = shared
    log = _log(tmp_path, location)
    for n in range(3):
        log.append("promotion", model="m", version=str(n + 1))
    client = s3_env.client()
    lines = client.get_object(Bucket=s3_env.bucket, Key=key)["Body"].read().decode().splitlines()
    lines[1] = lines[1].replace('"version":"2"', '"version":"9"')
    client.put_object(Bucket=s3_env.bucket, Key=key, Body=("\n".join(lines) + "\n").encode())
    ok, bad, reason = log.verify()
    assert not ok and bad == 3 and "does not chain" in reason


def test_a_deleted_s3_head_is_named(s3_env: S3Endpoint, shared: tuple[str, str], tmp_path: Path) -> None:
    location, key = shared
    log = _log(tmp_path, location)
    log.append("run_started", model="m")
    s3_env.client().delete_object(Bucket=s3_env.bucket, Key=key + ".head")
    ok, bad, reason = log.verify()
    assert not ok and bad == 1 and "signed head audit.jsonl.head is missing" in reason


def test_an_unreachable_s3_endpoint_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(UnavailableError, match=r"the audit log s3://nowhere/a/audit.jsonl could not be read"):
        AuditLog.of(tmp_path, location="s3://nowhere/a/").entries()


WRITER = """
import sys
from pathlib import Path
from attestflow.audit import AuditLog
root, location, name, count, key = sys.argv[1:]
log = AuditLog.of(Path(root) / name, Path(key), Path(key).with_name("signing-key.pub.pem"), location)
for n in range(int(count)):
    log.append("gate", model="m", worker=name, n=n)
"""


def test_workers_with_separate_workspaces_append_concurrently_to_one_chain(
    s3_env: S3Endpoint, shared: tuple[str, str], tmp_path: Path
) -> None:
    location, _ = shared
    keys = ensure_keypair(tmp_path / "release-key")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)  # the embedded default: each workspace's own file lock, no shared lock
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), location, f"w{i}", "10", str(keys.private_key)],
            env=env,
            cwd=ROOT,
        )
        for i in range(3)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]
    log = _log(tmp_path, location)
    assert log.verify() == (True, None, "30 entries, chain intact")
    written = {(e["details"]["worker"], e["details"]["n"]) for e in log.entries()}
    assert written == {(f"w{i}", n) for i in range(3) for n in range(10)}  # no append lost


def test_audit_show_and_verify_read_the_configured_s3_log(
    s3_env: S3Endpoint, shared: tuple[str, str], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    location, key = shared
    raw = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
    raw["workspace"] = str(tmp_path / "ws")
    raw["audit"] = {"location": location}
    config = tmp_path / "release.yaml"
    config.write_text(yaml.safe_dump(raw))
    log = AuditLog.configured(ReleaseConfig.model_validate(raw), tmp_path / "ws")
    log.append("run_started", model="m", flow_run_id="r1")
    log.append("gate", model="m", gate="performance", passed=True)
    show = CliRunner().invoke(app, ["audit", "show", "--config", str(config), "--model", "m"])
    assert show.exit_code == 0 and "run_started" in show.output and "performance" in show.output, show.output
    verify = CliRunner().invoke(app, ["audit", "verify", "--config", str(config)])
    assert verify.exit_code == 0 and "audit log intact" in verify.output, verify.output
    assert f"s3://{s3_env.bucket}/{key}" in verify.output.replace("\n", "")
    client = s3_env.client()
    body = client.get_object(Bucket=s3_env.bucket, Key=key)["Body"].read()
    client.put_object(Bucket=s3_env.bucket, Key=key, Body=body.replace(b'"r1"', b'"r9"'))
    broken = CliRunner().invoke(app, ["audit", "verify", "--config", str(config)])
    assert broken.exit_code == 1 and "audit log broken at line 2" in broken.output, broken.output
