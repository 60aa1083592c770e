"""Promotion serialised across machines by a Prefect global concurrency limit, with the audit log in S3."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from attestflow.audit import AuditLog
from attestflow.keys import ensure_keypair
from attestflow.promotion_lock import limit_name, shared_api_url
from tests.s3 import S3Endpoint

ROOT = Path(__file__).resolve().parents[2]


def _worker(server: str, s3: S3Endpoint, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **s3.env, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": server}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.flows.promotion_worker", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(p: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = p.communicate(timeout=180)
    return p.returncode, out


def test_only_a_server_other_than_the_process_own_counts_as_shared(prefect_server: str) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    assert shared_api_url() is None  # the test harness's temporary server: the embedded default
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        assert shared_api_url() == prefect_server
    assert limit_name("credit") == "attestflow-promote-credit"
    assert limit_name("a b").startswith("attestflow-promote-a-b-")


def test_two_workers_promoting_one_model_at_once_are_serialised(
    prefect_server: str, s3: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri, uri)
    client.create_registered_model("credit")
    for _ in range(2):
        client.create_model_version("credit", source=tmp_path.as_uri())
    keys = ensure_keypair(tmp_path / "release-key")
    location = f"s3://{s3.bucket}/{s3.prefix()}/"
    spans = tmp_path / "spans"
    workers = [
        _worker(prefect_server, s3, "promote", uri, "credit", v, str(tmp_path / f"ws{v}"),
                str(keys.private_key.parent), location, str(spans))
        for v in ("1", "2")
    ]  # fmt: skip
    results = [_finish(w) for w in workers]
    assert [code for code, _ in results] == [0, 0], results
    (_, a_start, a_end), (_, b_start, b_end) = sorted(
        (v, float(s), float(e)) for v, s, e in (line.split() for line in spans.read_text().splitlines())
    )
    assert a_end <= b_start or b_end <= a_start  # one waited for the other
    log = AuditLog.of(tmp_path / "reader", public_key=keys.public_key, location=location)
    assert log.verify()[0]
    first, second = [e for e in log.entries() if e["event"] == "promotion"]
    assert first["details"]["previous"] is None and second["details"]["previous"] == first["version"]
    aliases = {a: str(v) for a, v in client.get_registered_model("credit").aliases.items()}
    assert aliases == {"champion": second["version"], "previous": first["version"]}  # no move lost
    limit = httpx.get(f"{prefect_server}/v2/concurrency_limits/{limit_name('credit')}").json()
    assert limit["limit"] == 1 and limit["active"] and limit["active_slots"] == 0


def test_a_lock_held_elsewhere_past_the_timeout_is_unavailable(
    prefect_server: str, s3: S3Endpoint, tmp_path: Path
) -> None:
    keys = str(ensure_keypair(tmp_path / "release-key").private_key.parent)
    location = str(tmp_path / "audit")
    ready = tmp_path / "ready"
    holder = _worker(
        prefect_server, s3, "hold", "fraud", str(tmp_path / "a"), keys, location, "20", str(ready)
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert holder.poll() is None and time.monotonic() < deadline, holder.communicate()[0]
        time.sleep(0.2)
    code, out = _finish(
        _worker(prefect_server, s3, "take", "fraud", str(tmp_path / "b"), keys, location, "1")
    )
    holder.kill()
    holder.communicate()
    assert code == 3, out
    assert "UnavailableError: the promotion lock attestflow-promote-fraud on the Prefect server" in out
    assert "was not free within 1 s" in out


def test_a_limit_that_would_not_serialise_promotions_is_refused(
    prefect_server: str, s3: S3Endpoint, tmp_path: Path
) -> None:
    name = limit_name("loose")
    httpx.post(f"{prefect_server}/v2/concurrency_limits/", json={"name": name, "limit": 3}).raise_for_status()
    keys = str(ensure_keypair(tmp_path / "release-key").private_key.parent)
    code, out = _finish(_worker(prefect_server, s3, "take", "loose", str(tmp_path), keys, "", "5"))
    assert code == 2, out
    assert f"the concurrency limit {name} on {prefect_server} is limit 3" in out
    assert "acquired" not in out
