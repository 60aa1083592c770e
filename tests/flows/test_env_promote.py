"""Staging to prod end to end: a staging release, `attestflow promote --to prod` with a human approval."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from mlflow.tracking import MlflowClient

from attestflow.audit import AuditLog
from attestflow.evidence_check import REQUIREMENTS, EnvTrust
from attestflow.keys import KeyPair, ensure_keypair
from attestflow.settings import KeySpec
from attestflow.verify import verify_model_uri
from attestflow.workspace import Workspace
from tasks.generate_data import generate
from tests.conftest import ExampleRepo
from tests.flows import api
from tests.flows.test_approval import ATTESTFLOW, _env, _paused_run, _wait_event


def _environments(repo: ExampleRepo, staging: KeyPair, prod: KeyPair) -> Path:
    recent = repo.root / "data" / "prod-recent.csv"
    generate(1000, seed=5).to_csv(recent, index=False)
    envs: dict[str, Any] = {
        "staging": {
            "model_name": "tiny-credit",
            "audit": str(repo.root / "envs" / "staging" / "audit"),
            "key": {"private_key": str(staging.private_key), "public_key": str(staging.public_key)},
            "approve": {"mode": "auto"},
        },
        "prod": {
            "model_name": "tiny-credit-prod",
            "audit": str(repo.root / "envs" / "prod" / "audit"),
            "key": {"private_key": str(prod.private_key), "public_key": str(prod.public_key)},
            "promote_from": "staging",
            "trusts": [str(staging.public_key)],
            "approve": {"mode": "human", "approvers": ["alice", "bob"], "timeout_s": 300},
            "gates": {"policy": str(repo.write_policy("gates-prod.yaml")), "data": str(recent)},
        },
    }
    path = repo.root / "environments.yaml"
    path.write_text(yaml.safe_dump({"environments": envs}))
    return path


def _run(api_url: str, actor: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ATTESTFLOW, *args], env=_env(api_url, actor), capture_output=True, text=True, timeout=timeout
    )


def test_a_staging_release_reaches_prod_with_a_human_approval_and_a_failed_staging_verdict_does_not(
    example_repo: ExampleRepo, prefect_server: str
) -> None:
    staging = ensure_keypair(example_repo.root / "envs" / "staging" / "keys")
    prod = ensure_keypair(example_repo.root / "envs" / "prod" / "keys")
    environments = _environments(example_repo, staging, prod)
    config = example_repo.write_config(
        "staging.yaml",
        sign={"private_key": str(staging.private_key), "public_key": str(staging.public_key)},
        audit={"location": str(example_repo.root / "envs" / "staging" / "audit")},
    )
    released = _run(prefect_server, "scheduler", "run", "--config", str(config))
    assert released.returncode == 0, released.stdout[-3000:] + released.stderr[-3000:]
    staging_audit = AuditLog.of(
        example_repo.workspace,
        staging.private_key,
        staging.public_key,
        str(example_repo.root / "envs/staging/audit"),
    )
    digest = _wait_event(staging_audit, "registration")["details"]["bundle_sha256"]

    promote = [
        "promote",
        "models:/tiny-credit@champion",
        "--to",
        "prod",
        "--environments",
        str(environments),
        "--config",
        str(config),
        "--reason",
        "quarterly model",
    ]
    started = time.monotonic()
    proc = subprocess.Popen(
        [ATTESTFLOW, *promote],
        env=_env(prefect_server, "scheduler"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        run_id = _paused_run(prefect_server, timeout=300)
        waited = time.monotonic()
        ok = _run(
            prefect_server,
            "alice",
            "approve",
            run_id,
            "--digest",
            digest,
            "--reason",
            "checked",
            "--approver",
            "alice",
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
        answered = time.monotonic()
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    seconds = time.monotonic() - started
    print(f"promotion: {seconds:.1f} s wall, of which {answered - waited:.1f} s answering the approval")
    assert proc.returncode == 0, out[-4000:]

    (run,) = [r for r in api.post(f"{prefect_server}/flow_runs/filter", {}) if r["id"] == run_id]
    assert run["name"] == "promote tiny-credit v1 staging -> prod"
    assert {"env:prod", "promote_from:staging"} <= set(run["tags"])
    uri = Workspace.at(example_repo.workspace).mlflow_uri
    client = MlflowClient(uri, uri)
    assert str(client.get_model_version_by_alias("tiny-credit-prod", "champion").version) == "1"
    copied = client.get_model_version("tiny-credit-prod", "1")
    assert copied.tags["attestflow.promoted_from"] == "staging:tiny-credit/1"
    assert "attestflow.incomplete" not in copied.tags

    trust = EnvTrust("prod", prod.public_key, (staging.public_key,))
    checked = verify_model_uri(
        "models:/tiny-credit-prod/1", uri, prod.public_key, require=REQUIREMENTS, trust=trust
    )
    assert checked.ok, checked.failures
    assert {"prod promotion", "prod gate verdict", "prod approval", "signature"} <= {
        c.name for c in checked.checks
    }
    untrusted = verify_model_uri(
        "models:/tiny-credit-prod/1",
        uri,
        prod.public_key,
        require=REQUIREMENTS,
        trust=EnvTrust("prod", staging.public_key, (prod.public_key,)),
    )
    assert not untrusted.ok

    prod_audit = AuditLog.of(
        example_repo.workspace, prod.private_key, prod.public_key, str(example_repo.root / "envs/prod/audit")
    )
    events = [e["event"] for e in prod_audit.entries()]
    for event in (
        "env_promotion_started",
        "source_verified",
        "gate",
        "approval",
        "copied",
        "promotion",
        "canary",
    ):
        assert event in events, events
    approval = next(e for e in prod_audit.entries() if e["event"] == "approval")
    assert approval["actor"] == "user:alice" and approval["details"]["digest"] == digest
    assert prod_audit.verify()[0]
    done = next(e for e in prod_audit.entries() if e["event"] == "env_promotion_completed")
    print(f"promotion flow, approval wait included: {done['details']['seconds']} s")

    shown = _run(
        prefect_server, "alice", "lineage", "models:/tiny-credit-prod/1", "--config", str(config), "--json"
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    graph = json.loads(shown.stdout)
    assert graph["promoted_from"] == "staging:tiny-credit/1"
    source = {s["kind"]: s for s in graph["statements"]["evidence"]}
    target = {s["kind"]: s for s in graph["statements"]["environments/prod"]}
    assert source["verification_summary"]["result"] == "PASSED" and source["approval"]["result"] == "approved"
    assert target["promotion"]["result"] == "staging:tiny-credit/1 -> prod:tiny-credit-prod/1"
    assert target["verification_summary"]["result"] == "PASSED"
    assert target["approval"]["by"] == "user:alice" and target["canary"]["result"] == "PASSED"

    # Staging's newest verdict on v1 turns FAILED: it can no longer reach prod, and prod's copy no longer verifies.
    from attestflow.digests import Digest
    from attestflow.evidence import verification_summary
    from attestflow.records import GateDecision, GateReport, RegistrationRecord
    from tasks.attest import attest

    failed = GateReport(
        "m",
        Digest("sha256", copied.tags["onnx_sha256"], "file bytes"),
        Digest("sha256", "ab" * 32, "json"),
        "cpu",
        None,
        False,
        [GateDecision("performance", "f1", 0.1, 0.6, -0.5, False, "f1 too low", "sha256:" + "ab" * 32)],
        1.0,
    )
    gates_json = example_repo.root / "failed-gates.json"
    gates_json.write_text("{}")
    registered = RegistrationRecord("tiny-credit", "1", "models:/tiny-credit/1", "run", dict(copied.tags))
    signed = type(
        "Signed", (), {"provenance_digest": Digest("sha256", copied.tags["provenance_sha256"], "")}
    )()
    stmt = verification_summary(failed, registered, signed, gates_json, policy_uri="gates.yaml")
    attest(
        stmt,
        registered,
        key=KeySpec(private_key=staging.private_key, public_key=staging.public_key),
        workspace_root=example_repo.root / ".attestflow",
        tracking_uri=uri,
        out_dir=example_repo.root / "out",
        attach=gates_json,
    )

    refused = _run(
        prefect_server,
        "scheduler",
        *[a if a != "models:/tiny-credit@champion" else "models:/tiny-credit/1" for a in promote],
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "gate verdict" in refused.stderr and "FAILED" in refused.stderr, refused.stderr
    said_no = [e for e in prod_audit.entries() if e["event"] == "env_promotion_refused"]
    assert said_no and said_no[-1]["details"]["step"] == "verify"
    again = verify_model_uri(
        "models:/tiny-credit-prod/1", uri, prod.public_key, require=REQUIREMENTS, trust=trust
    )
    assert not again.ok
