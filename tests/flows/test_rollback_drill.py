"""The rollback drill on a real registry: it passes on champion + previous, and fails on tampered evidence."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from attestflow.audit import AuditLog
from attestflow.workspace import Workspace
from flows.cli import app
from flows.release import release
from flows.rollback_drill import rollback_drill
from tests.conftest import ExampleRepo


def _artifacts(client: MlflowClient, version: str) -> Path:
    """The local folder of a version's artifacts (the bundle and its `evidence/`)."""
    source = str(client.get_model_version("tiny-credit", version).source)
    return Path(urlparse(client.get_logged_model(source.rsplit("/", 1)[-1]).artifact_location).path)


def test_the_drill_passes_on_champion_and_previous_then_fails_when_previous_evidence_is_tampered(
    example_repo: ExampleRepo,
) -> None:
    config = example_repo.write_config()
    release(config_path=str(config))
    release(config_path=str(example_repo.write_config("second.yaml", fine_tune={"lr": 0.01})))
    uri = Workspace.at(example_repo.workspace).mlflow_uri
    client = MlflowClient(uri, uri)

    record = rollback_drill(environment=None, config_path=str(config))
    assert record.passed, record.failures
    assert (record.champion, record.previous, record.versions) == ("2", "1", ["1", "2"])
    assert {"verify v1", "to previous", "back to champion", "cleanup"} <= record.timings.keys()
    aliases = client.get_registered_model("tiny-credit").aliases
    assert aliases == {"champion": 2, "previous": 1}  # the drill alias is gone, serving untouched
    log = AuditLog.of(example_repo.workspace)
    drill = log.entries()[-1]
    assert drill["event"] == "rollback_drill" and drill["details"]["passed"] is True
    assert drill["details"]["versions"] == ["1", "2"] and drill["details"]["seconds"] > 0
    assert log.verify()[0]

    (approval,) = (_artifacts(client, "1") / "evidence").glob("approval-*.dsse.json")
    envelope = json.loads(approval.read_text())
    envelope["signatures"][0]["sig"] = envelope["signatures"][0]["sig"][::-1]
    approval.write_text(json.dumps(envelope))

    result = CliRunner().invoke(app, ["rollback-drill", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "rollback drill failed" in result.output and "v1:" in result.output
    drill = AuditLog.of(example_repo.workspace).entries()[-1]
    assert drill["event"] == "rollback_drill" and drill["details"]["passed"] is False
    assert drill["details"]["failures"][0].startswith("v1: ")
    assert client.get_registered_model("tiny-credit").aliases == {"champion": 2, "previous": 1}
