"""A release on an S3 DVC remote becomes champion: verify, promotion and the drift monitor reach it through DVC."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from attestflow.dvc_remote import REMOTE_URL_ENV
from flows import drift as drift_flow
from flows.cli import app
from flows.release import release
from tasks.drift import DriftReport
from tasks.generate_data import generate
from tests.conftest import ExampleRepo
from tests.s3 import S3Endpoint


def test_a_release_on_an_s3_dvc_remote_becomes_champion_and_verify_names_a_deleted_object(
    example_repo: ExampleRepo, s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    prefix = s3.prefix()
    url = f"s3://{s3.bucket}/{prefix}/dvc"
    monkeypatch.setenv(
        REMOTE_URL_ENV, url
    )  # as `source .attestflow/stack.env` sets it; no config names a remote
    config = example_repo.write_config()

    summary = release(config_path=str(config))
    assert summary.promotion is not None, "a release on an S3 remote should become the champion"
    md5 = summary.snapshot.dvc_md5
    assert summary.snapshot.remote_url == url
    key = f"{prefix}/dvc/files/md5/{md5[:2]}/{md5[2:]}"
    assert s3.client().head_object(Bucket=s3.bucket, Key=key)["ETag"].strip('"') == md5

    def verify() -> tuple[int, dict[str, str]]:
        done = CliRunner().invoke(
            app, ["verify", "models:/tiny-credit@champion", "--config", str(config), "--json"]
        )
        return done.exit_code, {c["name"]: c["detail"] for c in json.loads(done.output)["checks"]}

    code, checks = verify()
    assert code == 0, checks
    assert "by its ETag" in checks["data snapshot"]

    same = example_repo.root / "same.csv"
    generate(1000, seed=30).to_csv(same, index=False)
    report = drift_flow.monitor_drift(current=str(same), config_path=str(config))
    assert isinstance(report, DriftReport) and not report.drifted  # a champion exists: not Skipped

    s3.client().delete_object(Bucket=s3.bucket, Key=key)
    code, checks = verify()
    assert code == 1
    assert f"DVC object {md5} is not in the remote {url}" in checks["data snapshot"]
