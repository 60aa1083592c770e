"""Promotion, canary, rollback and the audit trail, end to end on real Prefect and MLflow."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from attestflow.audit import AuditLog
from attestflow.errors import GateFailedError
from attestflow.registry import Registry
from attestflow.workspace import Workspace
from flows.cli import app
from flows.release import release
from tasks.promote import promote
from tests.conftest import ExampleRepo


def _client(repo: ExampleRepo) -> MlflowClient:
    uri = Workspace.at(repo.workspace).mlflow_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _alias(repo: ExampleRepo, alias: str) -> str:
    return str(_client(repo).get_model_version_by_alias("tiny-credit", alias).version)


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_a_failing_canary_rolls_back_to_the_previous_champion(example_repo: ExampleRepo) -> None:
    release(config_path=str(example_repo.write_config()))
    assert _alias(example_repo, "champion") == "1"
    slow = example_repo.write_config(
        "canary.yaml", fine_tune={"lr": 0.01}, canary={"max_latency_ratio": 1e-6}
    )
    with pytest.raises(
        GateFailedError, match=r"canary of v2: .*latency [\d.]+x .* champion rolled back to v1"
    ):
        release(config_path=str(slow))
    assert _alias(example_repo, "champion") == "1"
    log = AuditLog.of(example_repo.workspace)
    assert log.verify()[0]
    moves = [
        (e["event"], e["version"]) for e in log.entries() if e["event"] in ("promotion", "canary_rollback")
    ]
    assert moves == [("promotion", "1"), ("promotion", "2"), ("canary_rollback", "1")]
    canary = [e for e in log.entries() if e["event"] == "canary"]
    assert [c["details"]["passed"] for c in canary] == [True, False]


def test_rollback_is_verified_recorded_and_shown(example_repo: ExampleRepo) -> None:
    config = example_repo.write_config()
    release(config_path=str(config))
    release(config_path=str(example_repo.write_config("second.yaml", fine_tune={"lr": 0.01})))
    assert (_alias(example_repo, "champion"), _alias(example_repo, "previous")) == ("2", "1")

    code, out = _cli("rollback", "--reason", "v2 misbehaves", "--config", str(config))
    assert code == 0, out
    assert (_alias(example_repo, "champion"), _alias(example_repo, "previous")) == ("1", "2")

    assert AuditLog.of(example_repo.workspace).entries()[-1]["details"]["reason"] == "v2 misbehaves"

    code, out = _cli("audit", "show", "--promotions", "--config", str(config))
    assert code == 0 and "rollback" in out and out.count("promotion") == 2

    code, out = _cli("audit", "verify", "--config", str(config))
    assert code == 0 and "chain intact" in out and "1 registry anchor(s)" in out

    # Truncating the log and its head file together is still caught by the registry's anchor.
    log = AuditLog.of(example_repo.workspace)
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join(lines[:-1]) + "\n")
    log.head_path.unlink()
    code, out = _cli("audit", "verify", "--config", str(config))
    assert code == 1 and "gone" in out


def test_a_canary_rejection_then_a_plain_rollback_does_not_make_the_rejected_version_champion(
    example_repo: ExampleRepo,
) -> None:
    config = example_repo.write_config()
    release(config_path=str(config))
    slow = example_repo.write_config(
        "canary.yaml", fine_tune={"lr": 0.01}, canary={"max_latency_ratio": 1e-6}
    )
    with pytest.raises(GateFailedError, match="canary of v2"):
        release(config_path=str(slow))
    # @previous is as before the refused promotion (unset), not the version the canary refused.
    assert Registry(Workspace.at(example_repo.workspace).mlflow_uri).aliases("tiny-credit") == {
        "champion": "1"
    }
    restored = [e for e in AuditLog.of(example_repo.workspace).entries() if e["event"] == "alias_restored"]
    assert [(e["version"], e["details"]["alias"]) for e in restored] == [(None, "previous")]
    code, out = _cli("rollback", "--reason", "undo the canary", "--config", str(config))
    assert code == 2 and "no @previous version" in out
    assert _alias(example_repo, "champion") == "1"
    code, out = _cli("audit", "verify", "--config", str(config))
    assert code == 0, out


def test_an_alias_moved_outside_attestflow_blocks_release_and_rollback_until_adopted(
    example_repo: ExampleRepo,
) -> None:
    config = example_repo.write_config()
    release(config_path=str(config))
    release(config_path=str(example_repo.write_config("second.yaml", fine_tune={"lr": 0.01})))
    _client(example_repo).set_registered_model_alias("tiny-credit", "champion", "1")

    code, out = _cli("audit", "verify", "--config", str(config))
    assert code == 1 and "tiny-credit@champion is v1 in the registry but v2 in the audit log" in out
    code, out = _cli("rollback", "--to", "2", "--reason", "undo the hand edit", "--config", str(config))
    assert code == 1 and "rollback refused: tiny-credit@champion is v1" in out and "audit adopt" in out
    assert _alias(example_repo, "champion") == "1"
    with pytest.raises(GateFailedError, match="release refused: tiny-credit@champion is v1"):
        release(config_path=str(config))
    log = AuditLog.of(example_repo.workspace)
    assert [e["event"] for e in log.entries()[-2:]] == ["rollback_refused", "release_refused"]

    code, out = _cli(
        "audit", "adopt", "tiny-credit", "--reason", "hotfix by on-call", "--config", str(config)
    )
    assert code == 0 and "adopted: tiny-credit@champion" in out
    code, out = _cli("audit", "verify", "--config", str(config))
    assert code == 0, out
    code, out = _cli(
        "rollback", "--to", "2", "--reason", "back to the audited champion", "--config", str(config)
    )
    assert code == 0, out
    assert _alias(example_repo, "champion") == "2"
    adopted, rolled = log.entries()[-2:]
    assert adopted["event"] == "alias_adopted" and adopted["details"]["reason"] == "hotfix by on-call"
    assert rolled["event"] == "rollback" and rolled["details"]["reason"] == "back to the audited champion"


def test_rollback_to_a_tampered_version_is_refused(example_repo: ExampleRepo) -> None:
    config = example_repo.write_config()
    first = release(config_path=str(config))
    release(config_path=str(example_repo.write_config("second.yaml", fine_tune={"lr": 0.01})))
    from urllib.parse import urlparse

    client = _client(example_repo)
    source = str(client.get_model_version("tiny-credit", first.registration.version).source)
    onnx_file = (
        Path(urlparse(client.get_logged_model(source.rsplit("/", 1)[-1]).artifact_location).path)
        / "model.onnx"
    )
    data = bytearray(onnx_file.read_bytes())
    data[-10] ^= 0xFF
    onnx_file.write_bytes(bytes(data))

    code, out = _cli("rollback", "--to", "1", "--reason", "test", "--config", str(config))
    assert code == 1 and "rollback refused" in out and "model.onnx does not match" in out
    assert _alias(example_repo, "champion") == "2"
    assert AuditLog.of(example_repo.workspace).entries()[-1]["event"] == "rollback_refused"


def test_rollback_without_a_previous_version_is_bad_input(example_repo: ExampleRepo) -> None:
    config = example_repo.write_config()
    release(config_path=str(config))
    code, out = _cli("rollback", "--reason", "test", "--config", str(config))
    assert code == 2 and "no @previous version" in out


def test_an_edited_audit_line_is_named_by_audit_verify(example_repo: ExampleRepo) -> None:
    config = example_repo.write_config()
    release(config_path=str(config))
    log = AuditLog.of(example_repo.workspace)
    lines = log.path.read_text().splitlines()
    entry = json.loads(lines[2])
    entry["actor"] = "user:someone-else"
    lines[2] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    log.path.write_text("\n".join(lines) + "\n")
    code, out = _cli("audit", "verify", "--config", str(config))
    assert code == 1 and "broken at line 4" in out


def test_two_concurrent_promotions_leave_one_champion_and_an_intact_chain(example_repo: ExampleRepo) -> None:
    release(config_path=str(example_repo.write_config()))
    release(config_path=str(example_repo.write_config("second.yaml", fine_tune={"lr": 0.01})))
    ws = Workspace.at(example_repo.workspace)
    key = ws.root / "keys" / "signing-key.pub.pem"
    audit = AuditLog.of(ws.root)
    errors: list[BaseException] = []

    def race(version: str) -> None:
        try:
            for _ in range(3):
                promote(
                    "tiny-credit",
                    version,
                    "champion",
                    "previous",
                    ws.mlflow_uri,
                    key,
                    audit,
                    f"race-{version}",
                )
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=race, args=(v,)) for v in ("1", "2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert audit.verify()[0]
    promotions = [e for e in audit.entries() if e["event"] == "promotion"]
    last = promotions[-1]
    assert _alias(example_repo, "champion") == last["version"]
    # Each promotion saw the champion that the one before it left: no lost update.
    for before, after in zip(promotions[-6:], promotions[-5:], strict=False):
        assert after["details"]["previous"] == before["version"]


def test_audit_events_are_mirrored_as_prefect_events(
    example_repo: ExampleRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import events

    seen: list[str] = []
    real = events.emit_event

    def spy(**kwargs: object) -> object:
        seen.append(str(kwargs["event"]))
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(events, "emit_event", spy)
    release(config_path=str(example_repo.write_config()))
    assert {"attestflow.audit.run_started", "attestflow.audit.gate", "attestflow.audit.promotion"} <= set(
        seen
    )
    logged = [e["event"] for e in AuditLog.of(example_repo.workspace).entries()]
    assert [s.removeprefix("attestflow.audit.") for s in seen] == logged
