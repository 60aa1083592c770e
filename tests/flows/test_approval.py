"""Human approval through a real Prefect server: pause, approve or reject from another process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from attestflow.audit import AuditLog
from attestflow.keys import ensure_keypair, key_id, load_public_key
from attestflow.workspace import Workspace
from tests.conftest import ExampleRepo
from tests.flows import api

ATTESTFLOW = str(Path(sys.executable).with_name("attestflow"))


def _env(api_url: str, actor: str) -> dict[str, str]:
    env = {**os.environ, "PREFECT_API_URL": api_url, "ATTESTFLOW_ACTOR": actor}
    env.pop("PREFECT_HOME", None)
    return env


def _paused_run(api_url: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    body = {"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}}
    while time.monotonic() < deadline:
        runs = api.post(f"{api_url}/flow_runs/filter", body)
        if runs:
            return str(runs[0]["id"])
        time.sleep(1)
    raise AssertionError("no flow run paused for approval")


def _wait_event(audit: AuditLog, event: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in audit.entries() if e["event"] == event]
        if found:
            return found[-1]
        time.sleep(1)
    raise AssertionError(f"no {event!r} in the audit log")


def _keypair(folder: Path, who: str) -> tuple[Path, Path]:
    """A fresh EC key pair for `who` in its own folder: (private PEM, public PEM)."""
    pair = ensure_keypair(folder / who)
    return pair.private_key, pair.public_key


def _start_release(repo: ExampleRepo, api_url: str, **sections: dict[str, Any]) -> subprocess.Popen[str]:
    approve = {"mode": "human", "timeout_s": 300, "approvers": ["alice", "bob", "scheduler"]}
    config = repo.write_config(**{"approve": approve, **sections})
    return subprocess.Popen(
        [ATTESTFLOW, "run", "--config", str(config)],
        env=_env(api_url, "scheduler"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _decide(
    api_url: str, verb: str, run_id: str, digest: str, who: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            ATTESTFLOW,
            verb,
            run_id,
            "--digest",
            digest,
            "--reason",
            f"{who} checked the gates",
            "--approver",
            who,
            *extra,
        ],
        env=_env(api_url, who),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_human_approval_refuses_a_wrong_digest_self_approval_and_a_foreign_signature_then_promotes(
    example_repo: ExampleRepo, prefect_server: str
) -> None:
    alice_key, alice_public = _keypair(example_repo.root, "alice")
    mallory_key, _ = _keypair(example_repo.root, "mallory")
    approve = {
        "mode": "human",
        "timeout_s": 300,
        "approvers": ["alice", "bob", "scheduler"],
        "approver_keys": {"alice": str(alice_public)},
    }
    proc = _start_release(example_repo, prefect_server, approve=approve)
    try:
        run_id = _paused_run(prefect_server)
        audit = AuditLog.of(example_repo.workspace)
        digest = _wait_event(audit, "registration")["details"]["bundle_sha256"]

        wrong = _decide(prefect_server, "approve", run_id, "f" * 64, "mallory")
        assert wrong.returncode == 1, wrong.stdout + wrong.stderr
        assert "is not the bundle's" in wrong.stderr and "keeps waiting" in wrong.stderr
        refused = _wait_event(audit, "approval_refused")
        assert refused["actor"] == "user:mallory" and "is not the bundle's" in refused["details"]["why"]

        own = _decide(prefect_server, "approve", _paused_run(prefect_server), digest[:16], "scheduler")
        assert own.returncode == 1 and "triggered this release" in own.stderr, own.stdout + own.stderr

        forged = _decide(
            prefect_server, "approve", _paused_run(prefect_server), digest, "alice", "--key", str(mallory_key)
        )
        assert forged.returncode == 1 and "not user:alice's" in forged.stderr, forged.stdout + forged.stderr
        said_no = [e for e in audit.entries() if e["event"] == "approval_refused"]
        assert [e["actor"] for e in said_no] == ["user:mallory", "user:scheduler", "user:alice"]

        ok = _decide(
            prefect_server, "approve", _paused_run(prefect_server), digest, "alice", "--key", str(alice_key)
        )
        assert ok.returncode == 0 and "approved" in ok.stdout, ok.stdout + ok.stderr
        out, _ = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    uri = Workspace.at(example_repo.workspace).mlflow_uri
    assert str(MlflowClient(uri, uri).get_model_version_by_alias("tiny-credit", "champion").version) == "1"
    approval = [e for e in audit.entries() if e["event"] == "approval"][-1]
    assert approval["actor"] == "user:alice" and approval["details"]["digest"] == digest
    assert approval["details"]["approver_key_id"] == key_id(load_public_key(alice_public))
    assert audit.verify()[0]


def test_human_rejection_ends_the_release_without_moving_the_alias(
    example_repo: ExampleRepo, prefect_server: str
) -> None:
    proc = _start_release(example_repo, prefect_server)
    try:
        run_id = _paused_run(prefect_server)
        audit = AuditLog.of(example_repo.workspace)
        digest = _wait_event(audit, "registration")["details"]["bundle_sha256"]
        rejected = _decide(prefect_server, "reject", run_id, digest, "bob")
        assert rejected.returncode == 0, rejected.stdout + rejected.stderr
        out, _ = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 1, out[-3000:]
    assert "not approved by user:bob" in out
    uri = Workspace.at(example_repo.workspace).mlflow_uri
    with pytest.raises(MlflowException):
        MlflowClient(uri, uri).get_model_version_by_alias("tiny-credit", "champion")


def test_a_first_release_under_require_approval_waits_for_a_person_in_auto_mode_instead_of_failing(
    example_repo: ExampleRepo, prefect_server: str
) -> None:
    policy = example_repo.write_policy(
        "approval.yaml", baseline={"alias": "champion", "first_release": "require_approval"}
    )
    proc = _start_release(
        example_repo,
        prefect_server,
        approve={"mode": "auto", "approvers": ["bob"]},
        gates={"policy": str(policy)},
    )
    try:
        run_id = _paused_run(prefect_server)
        audit = AuditLog.of(example_repo.workspace)
        digest = _wait_event(audit, "registration")["details"]["bundle_sha256"]
        regression = [
            e for e in audit.entries() if e["event"] == "gate" and e["details"]["gate"] == "regression"
        ]
        assert regression and all(e["details"]["passed"] for e in regression)
        assert all(
            e["details"]["reason"] == "first release: no baseline; human approval required"
            for e in regression
        )
        ok = _decide(prefect_server, "approve", run_id, digest[:16], "bob")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        out, _ = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    uri = Workspace.at(example_repo.workspace).mlflow_uri
    assert str(MlflowClient(uri, uri).get_model_version_by_alias("tiny-credit", "champion").version) == "1"
    approval = [e for e in audit.entries() if e["event"] == "approval"][-1]
    assert approval["actor"] == "user:bob" and approval["details"]["mode"] == "human"
