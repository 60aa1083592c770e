"""An identical re-run is served what it made, verified on the hit; anything tampered or changed is made again.

The signed bundle comes from the stage cache; the version it registers, already the champion
with verified evidence under the current gate policy, is an unchanged release: nothing after
registration runs. A changed policy or tampered evidence releases in full.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from mlflow import MlflowClient

from attestflow.audit import AuditLog
from attestflow.errors import GateFailedError
from attestflow.outcomes import ReleaseSummary
from attestflow.workspace import Workspace
from flows.release import release
from tests.conftest import ExampleRepo
from tests.flows.test_stage_cache import _states


def _run(config: Path) -> ReleaseSummary:
    return release(config_path=str(config))


AFTER_REGISTRATION = {"gates", "gate", "publish_gates", "model_card", "attest", "promote", "canary"}
"""Task runs of the stages after registration (a gate's run is named ``gate-<name>``)."""


def _served(example_repo: ExampleRepo) -> list[dict[str, object]]:
    return [e for e in AuditLog.of(example_repo.workspace).entries() if e["event"] == "served_from_cache"]


def _entries(example_repo: ExampleRepo) -> list[dict[str, Any]]:
    return list(AuditLog.of(example_repo.workspace).entries())


def _events(entries: list[dict[str, Any]]) -> list[str]:
    return [str(e["event"]) for e in entries]


def _client(example_repo: ExampleRepo) -> MlflowClient:
    uri = Workspace.at(example_repo.workspace).mlflow_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _artifacts(example_repo: ExampleRepo, version: str) -> Path:
    """The registered version's artifact folder on disk."""
    client = _client(example_repo)
    model_id = str(client.get_model_version("tiny-credit", version).source).rsplit("/", 1)[-1]
    return Path(urlparse(client.get_logged_model(model_id).artifact_location).path)


def test_an_identical_rerun_is_served_the_verified_bundle_and_any_change_signs_again(
    example_repo: ExampleRepo,
) -> None:
    config = example_repo.write_config()
    first = _run(config)
    assert _states(first.flow_run_id)["sign"] == "Completed"
    assert _served(example_repo) == []

    before = _entries(example_repo)
    second = _run(config)
    states = _states(second.flow_run_id)
    assert states["sign"] == "Cached"
    assert second.signature == first.signature
    assert second.registration.version == first.registration.version
    (served,) = _served(example_repo)
    assert served["details"] == {
        "stage": "sign",
        "release_key": first.signature.release_key,
        "bundle": str(first.signature.bundle_dir),
    }
    # The version it registers is the verified champion: an unchanged release, nothing after registration ran.
    assert second.unchanged is not None and second.unchanged.version == first.registration.version
    assert second.unchanged.message == "unchanged: version 1 is already champion with verified evidence"
    assert (second.gates, second.approval, second.promotion, second.canary) == (None, None, None, None)
    assert not AFTER_REGISTRATION & set(states)
    added = _entries(example_repo)[len(before) :]
    assert _events(added)[-1] == "release_unchanged" and _events(added).count("release_unchanged") == 1
    assert not {"gate", "evidence_signed", "approval", "promotion", "canary", "release_completed"} & set(
        _events(added)
    )
    unchanged = added[-1]
    assert unchanged["version"] == "1" and unchanged["details"]["release_key"] == first.signature.release_key
    assert unchanged["details"]["evidence"] and all(
        p.startswith("evidence/") for p in unchanged["details"]["evidence"]
    )
    assert str(_client(example_repo).get_model_version_by_alias("tiny-credit", "champion").version) == "1"

    # A cached bundle whose bytes changed does not verify: it is not served, the stage signs again.
    metrics = first.signature.bundle_dir / "attestation" / "metrics.json"
    metrics.write_text(metrics.read_text().replace("{", "{ ", 1))
    third = _run(config)
    assert _states(third.flow_run_id)["sign"] == "Completed"
    assert third.signature.bundle_dir.is_relative_to(third.release_dir)
    assert len(_served(example_repo)) == 1

    # Any changed input of the bundle is a new key.
    fourth = _run(example_repo.write_config(sign={"builder_id": "https://example.org/other-builder"}))
    assert _states(fourth.flow_run_id)["sign"] == "Completed"
    assert fourth.signature.release_key != first.signature.release_key


def test_a_rerun_under_a_changed_policy_or_with_tampered_evidence_runs_the_gates_again(
    example_repo: ExampleRepo,
) -> None:
    config = example_repo.write_config()
    first = _run(config)
    assert first.unchanged is None and first.promotion is not None

    # A changed threshold is a new policy digest: the champion's verdict was not made under it.
    example_repo.write_policy(
        performance={
            "thresholds": [
                {"metric": "accuracy", "threshold": 0.55},
                {"metric": "f1", "threshold": 0.6},
                {"metric": "roc_auc", "threshold": 0.7},
            ]
        }
    )
    second = _run(config)
    assert second.unchanged is None and second.registration.version == first.registration.version
    assert _states(second.flow_run_id)["gates"] == "Completed"
    assert first.gates is not None and second.gates is not None
    assert second.gates.policy_digest != first.gates.policy_digest
    assert "release_unchanged" not in _events(_entries(example_repo))

    # A byte of the champion's signed gate verdict's gates.json changed: no shortcut, the full path refuses it.
    (gates_json, *_) = sorted((_artifacts(example_repo, "1") / "evidence").glob("*.gates.json"))
    data = bytearray(gates_json.read_bytes())
    data[len(data) // 2] ^= 0x01
    gates_json.write_bytes(bytes(data))
    before = len(_entries(example_repo))
    with pytest.raises(GateFailedError, match="refused"):
        _run(config)
    added = _events(_entries(example_repo)[before:])
    assert "gate" in added and "release_unchanged" not in added
