"""Staging to prod end to end: a staging release, `attestflow promote --to prod` with a human approval.

Prod's key lives in a SoftHSM2 token: what prod signs (its statements and its own model signature
of the bundle) is checked with prod's public key alone, through securesystemslib and the upstream
``model_signing`` command line, and the token's PIN is written nowhere."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from mlflow.tracking import MlflowClient
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from attestflow.audit import AuditLog
from attestflow.evidence_check import REQUIREMENTS, EnvTrust
from attestflow.keys import KeyPair, ensure_keypair
from attestflow.settings import KeySpec
from attestflow.verify import download_bundle, verify_model_uri
from attestflow.workspace import Workspace
from tasks.generate_data import generate
from tests.conftest import ExampleRepo
from tests.flows import api
from tests.flows.test_approval import ATTESTFLOW, _env, _paused_run, _wait_event
from tests.softhsm import PIN, upstream_verify


def _environments(repo: ExampleRepo, staging: KeyPair, prod: tuple[str, Path]) -> Path:
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
            "key": {"pkcs11_uri": prod[0], "public_key": str(prod[1])},  # a SoftHSM2 token's key
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


def _verified_by(folder: Path, public_key: Path) -> dict[str, dict[str, Any]]:
    """Kind -> statement of each DSSE envelope in `folder`, verified by securesystemslib with `public_key` alone."""
    loaded = serialization.load_pem_public_key(public_key.read_bytes())
    assert isinstance(loaded, ec.EllipticCurvePublicKey)
    der = loaded.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = SSlibKey.from_crypto(loaded, keyid="sha256:" + hashlib.sha256(der).hexdigest())
    found = {}
    for path in sorted(folder.glob("*.dsse.json")):
        envelope = Envelope.from_dict(json.loads(path.read_text()))
        envelope.verify([key], 1)  # raises VerificationError
        found[path.name.split("-", 1)[0]] = json.loads(envelope.payload)
    return found


def test_a_staging_release_reaches_prod_with_a_human_approval_and_a_failed_staging_verdict_does_not(
    example_repo: ExampleRepo, prefect_server: str, softhsm_key: tuple[str, Path]
) -> None:
    staging = ensure_keypair(example_repo.root / "envs" / "staging" / "keys")
    prod_key = softhsm_key[1]  # prod signs inside a SoftHSM2 token; verifiers hold only this public key
    environments = _environments(example_repo, staging, softhsm_key)
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

    trust = EnvTrust("prod", prod_key, (staging.public_key,))
    checked = verify_model_uri("models:/tiny-credit-prod/1", uri, prod_key, require=REQUIREMENTS, trust=trust)
    assert checked.ok, checked.failures
    assert {"prod promotion", "prod model signature", "prod gate verdict", "prod approval", "signature"} <= {
        c.name for c in checked.checks
    }

    # What prod signed in the token verifies with prod's public key alone, by libraries attestflow did not write.
    landed = download_bundle("tiny-credit-prod", "1", uri, example_repo.root / "prod-v1")
    assert isinstance(landed, Path), landed
    by_prod = _verified_by(landed / "environments" / "prod", prod_key)
    assert {"promotion", "verification_summary", "approval", "canary"} <= set(by_prod), sorted(by_prod)
    promotion = by_prod["promotion"]["predicate"]
    assert (promotion["source"]["env"], promotion["target"]["model"]) == ("staging", "tiny-credit-prod")
    model_sig = landed / "environments" / "prod" / "model.sig"
    assert promotion["target"]["signature"] == {
        "uri": "environments/prod/model.sig",
        "digest": {"sha256": hashlib.sha256(model_sig.read_bytes()).hexdigest()},
    }
    with pytest.raises(VerificationError):
        _verified_by(landed / "environments" / "prod", staging.public_key)
    upstream = upstream_verify(landed, prod_key, "environments/prod/model.sig")
    assert upstream.returncode == 0, upstream
    assert upstream_verify(landed, staging.public_key, "environments/prod/model.sig").returncode != 0
    untrusted = verify_model_uri(
        "models:/tiny-credit-prod/1",
        uri,
        prod_key,
        require=REQUIREMENTS,
        trust=EnvTrust("prod", staging.public_key, (prod_key,)),
    )
    assert not untrusted.ok

    prod_audit = AuditLog.of(
        example_repo.workspace, public_key=prod_key, location=str(example_repo.root / "envs/prod/audit")
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
    artifacts = json.dumps(api.post(f"{prefect_server}/artifacts/filter", {}))
    written = [landed, example_repo.root / "envs", Workspace.at(example_repo.workspace).releases]
    texts = [p.read_text(errors="replace") for root in written for p in root.rglob("*") if p.is_file()]
    assert all(PIN not in text for text in [*texts, artifacts, out]), "the token's PIN was written somewhere"
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
    again = verify_model_uri("models:/tiny-credit-prod/1", uri, prod_key, require=REQUIREMENTS, trust=trust)
    assert not again.ok
