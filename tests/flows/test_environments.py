"""`attestflow run --env staging`: the release goes into staging's model, audit log and key, and says so."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from uuid import UUID

import pytest
from typer.testing import CliRunner

from attestflow.audit import AuditLog
from attestflow.environments import release_config
from attestflow.keys import key_id, load_public_key
from attestflow.registry import Registry
from attestflow.workspace import Workspace
from flows.cli import app
from tests.conftest import ExampleRepo


def test_a_release_into_staging_uses_stagings_model_audit_log_and_key_and_is_labelled_staging(
    example_repo: ExampleRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    config, envs = example_repo.write_config(), example_repo.write_environments()
    env_args = ["--config", str(config), "--env", "staging", "--environments", str(envs)]
    result = CliRunner().invoke(app, ["run", *env_args])
    assert result.exit_code == 0, result.output

    ws = Workspace.at(example_repo.workspace)
    registry = Registry(ws.mlflow_uri)
    assert registry.alias_version("tiny-credit-staging", "champion") == "1"
    assert registry.alias_version("tiny-credit", "champion") is None
    version = registry.version("models:/tiny-credit-staging/1")
    staging_key = example_repo.workspace / "envs/staging/keys/signing-key.pub.pem"
    assert version is not None and version.tags["environment"] == "staging"
    assert version.tags["signing_key_id"] == key_id(load_public_key(staging_key))

    cfg = release_config(config, None, "staging", envs)
    audit = AuditLog.configured(cfg, ws.root)
    assert audit.store.location.startswith(str(example_repo.workspace / "envs/staging/audit"))
    entries = audit.entries()
    started = next(e for e in entries if e["event"] == "run_started")
    assert started["model"] == "tiny-credit-staging" and started["details"]["environment"] == "staging"
    registered = next(e for e in entries if e["event"] == "registration")
    assert registered["details"]["environment"] == "staging"
    assert not AuditLog.of(ws.root).entries(), "nothing in the workspace's own audit log"

    (provenance,) = (ws.releases / "tiny-credit-staging").glob("*/**/provenance.dsse.json")
    stmt = json.loads(base64.b64decode(json.loads(provenance.read_text())["payload"]))
    assert stmt["predicate"]["buildDefinition"]["externalParameters"]["environment"] == "staging"

    from prefect import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(version.tags["prefect_flow_run_id"]))
    assert "env:staging" in run.tags and run.name.startswith("staging-"), (run.name, run.tags)

    verified = CliRunner().invoke(app, ["verify", "models:/tiny-credit-staging@champion", *env_args])
    assert verified.exit_code == 0, verified.output
