"""A version promoted into another environment: its evidence checked with both environments' keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mlflow.tracking import MlflowClient

from attestflow.bundle import ATTESTATION, ENVIRONMENTS, MLFLOW_META, MODEL, sign_bundle, signed_files
from attestflow.digests import Digest
from attestflow.dsse import dsse_sign
from attestflow.env_promotion import CopyRecord, Source, promotion_statement
from attestflow.evidence import (
    VSA,
    approval_statement,
    attachment,
    canary_statement,
    evidence_name,
    kind_of,
    statement_time,
    verification_summary,
)
from attestflow.evidence_check import (
    APPROVED,
    GATES,
    EnvTrust,
    environment_dir,
    environment_signature,
    promoted_evidence,
    verify_release,
)
from attestflow.evidence_read import evidence_files
from attestflow.keys import KeyPair, ensure_keypair, key_id, load_private_key, load_public_key
from attestflow.lineage import CodeRevision
from attestflow.outcomes import ApprovalRecord
from attestflow.records import GateDecision, GateReport, Invocation, RegistrationRecord
from attestflow.registry import INCOMPLETE, PROMOTED_FROM, ModelRef, Registry
from attestflow.tracking import log_bundle
from attestflow.verify import download_bundle
from attestflow.workspace import Workspace
from tasks.copy_version import copy_version
from tests.code.test_evidence import POLICY, Bundle

PROD = environment_dir("prod")
PROD_SIGNATURE = environment_signature("prod")
SOURCE = Source("staging", "credit", "2", "sqlite:///unused.db")


class Promoted:
    """A staging-released bundle (`Bundle`) and what prod signs about it under ``environments/prod/``."""

    def __init__(self, bundle: Bundle, prod: KeyPair) -> None:
        self.b, self.prod = bundle, prod
        self.registered = RegistrationRecord("credit-prod", "1", "models:/credit-prod/1", "run")
        self.signed = bundle.signed.__class__(
            **{**bundle.signed.__dict__, "key_id": key_id(load_public_key(bundle.keys.public_key))}
        )

    def add(self, stmt: dict[str, Any], key: ec.EllipticCurvePrivateKey | None = None) -> Path:
        path = self.b.root / PROD / evidence_name(kind_of(stmt), statement_time(stmt))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dsse_sign(stmt, key or load_private_key(self.prod.private_key))))
        if (named := attachment(stmt)) is not None and stmt["predicateType"] == VSA:
            shutil.copy(self.b.root.parent / "gates.json", self.b.root / named)
        return path

    @property
    def signature(self) -> Path:
        """Prod's own model signature of the bundle, where the promotion names it."""
        return self.b.root / PROD_SIGNATURE

    def promotion(self, version: str = "1", signed_with: Path | None = None) -> dict[str, Any]:
        """Prod's model signature (made with `signed_with`, default prod's key) and the promotion naming it."""
        self.signature.parent.mkdir(parents=True, exist_ok=True)
        sign_bundle(self.b.root, signed_with or self.prod.private_key, self.signature)
        target = RegistrationRecord("credit-prod", version, f"models:/credit-prod/{version}", "run")
        return promotion_statement(
            SOURCE,
            "prod",
            self.b.root,
            self.signed,
            target,
            ["user:alice"],
            signature=self.signature,
            time=self.b.tick(),
        )

    def verdict(self) -> dict[str, Any]:
        decision = GateDecision("regression", "f1", 0.8, 0.0, 0.1, True, "r", POLICY)
        report = GateReport(
            "m",
            self.signed.onnx_digest,
            Digest("sha256", POLICY, "canonical JSON"),
            "cpu",
            None,
            True,
            [decision],
            1.0,
        )
        gates_json = self.b.root.parent / "gates.json"
        gates_json.write_text(json.dumps({"passed": True, "env": "prod"}))
        return verification_summary(
            report,
            self.registered,
            self.signed,
            gates_json,
            policy_uri="p.yaml",
            time=self.b.tick(),
            under=PROD,
        )

    def approval(self) -> dict[str, Any]:
        at = self.b.tick()
        record = ApprovalRecord(True, "user:alice", "prod ok", self.b.bundle.value, at, "human")
        invocation = Invocation("c.yaml", [], "run", at, "user:bob", CodeRevision("abc", False))
        return approval_statement(record, self.registered, invocation)

    def canary(self, passed: bool) -> dict[str, Any]:
        return canary_statement(
            self.registered, self.signed, passed=passed, reasons=["worse"], previous=None, time=self.b.tick()
        )

    def trust(self, *source_keys: Path) -> EnvTrust:
        return EnvTrust("prod", self.prod.public_key, source_keys or (self.b.keys.public_key,))

    def checks(self, trust: EnvTrust | None = None, version: str = "1") -> dict[str, tuple[bool, str]]:
        found = promoted_evidence(
            self.b.root, trust or self.trust(), model_name="credit-prod", version=version
        )
        return {c.name: (c.ok, c.detail) for c in found}


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return ensure_keypair(tmp_path_factory.mktemp("staging"))


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return ensure_keypair(tmp_path_factory.mktemp("prod"))


def _promoted(root: Path, source_keys: KeyPair, prod: KeyPair) -> Promoted:
    bundle = Bundle(root, source_keys)
    bundle.add(bundle.verdict())
    bundle.add(bundle.approval())
    promoted = Promoted(bundle, prod)
    promoted.add(promoted.promotion())
    promoted.add(promoted.verdict())
    promoted.add(promoted.approval())
    return promoted


@pytest.fixture
def promoted(tmp_path: Path, staging: KeyPair, prod: KeyPair) -> Promoted:
    return _promoted(tmp_path / "model", staging, prod)


def test_a_promoted_version_with_both_environments_evidence_holds(promoted: Promoted) -> None:
    checks = promoted.checks()
    assert all(ok for ok, _ in checks.values()), checks
    assert set(checks) == {"prod promotion", "prod model signature", "prod gate verdict", "prod approval"}
    assert "promoted from staging:credit/2" in checks["prod promotion"][1]
    result = verify_release(
        promoted.b.root,
        promoted.prod.public_key,
        require=(GATES, APPROVED),
        model_name="credit-prod",
        version="1",
        trust=promoted.trust(),
    )
    assert result.ok, result.failures
    assert {c.name for c in result.checks} >= {"gate verdict", "approval", "prod promotion"}


def test_the_source_evidence_verifies_with_any_trusted_source_key(promoted: Promoted, tmp_path: Path) -> None:
    other = ensure_keypair(tmp_path / "retired-staging-key")
    trust = promoted.trust(other.public_key, promoted.b.keys.public_key)
    result = verify_release(
        promoted.b.root,
        promoted.prod.public_key,
        require=(GATES, APPROVED),
        model_name="credit-prod",
        version="1",
        trust=trust,
    )
    assert result.ok, result.failures


def test_a_promotion_statement_signed_with_the_source_key_is_refused(
    tmp_path: Path, staging: KeyPair, prod: KeyPair
) -> None:
    bundle = Bundle(tmp_path / "model", staging)
    promoted = Promoted(bundle, prod)
    promoted.add(promoted.promotion(), key=load_private_key(staging.private_key))
    promoted.add(promoted.verdict())
    promoted.add(promoted.approval())
    ok, detail = promoted.checks()["prod promotion"]
    assert not ok and "no signature in the envelope verifies" in detail


def test_a_promotion_statement_about_another_version_is_refused(
    tmp_path: Path, staging: KeyPair, prod: KeyPair
) -> None:
    bundle = Bundle(tmp_path / "model", staging)
    promoted = Promoted(bundle, prod)
    promoted.add(promoted.promotion(version="7"))
    promoted.add(promoted.verdict())
    promoted.add(promoted.approval())
    ok, detail = promoted.checks()["prod promotion"]
    assert not ok and "is about version 7, not 1" in detail


def test_an_evidence_file_changed_after_the_promotion_is_refused(promoted: Promoted) -> None:
    promoted.b.add(promoted.b.approval(approved=False))  # a later staging decision, validly signed
    ok, detail = promoted.checks()["prod promotion"]
    assert not ok and "differs from what the promotion recorded" in detail
    (added,) = [p for p in (promoted.b.root / "evidence").glob("approval-*") if p.name in detail]
    added.unlink()
    assert promoted.checks()["prod promotion"][0]
    (verdict,) = (promoted.b.root / "evidence").glob("verification_summary-*.dsse.json")
    verdict.write_text(verdict.read_text() + " ")
    ok, detail = promoted.checks()["prod promotion"]
    assert not ok and verdict.name in detail


def test_a_failed_target_canary_undoes_the_target_approval(promoted: Promoted) -> None:
    promoted.add(promoted.canary(passed=False))
    ok, detail = promoted.checks()["prod approval"]
    assert not ok and "the canary rejected this model.onnx" in detail
    assert promoted.checks()["prod gate verdict"][0]


def test_a_version_signed_only_by_a_key_prod_does_not_trust_is_refused(tmp_path: Path, prod: KeyPair) -> None:
    dev = ensure_keypair(tmp_path / "dev")
    staging = ensure_keypair(tmp_path / "staging")
    promoted = _promoted(tmp_path / "model", dev, prod)
    trust = EnvTrust("prod", prod.public_key, (staging.public_key,))
    assert not promoted.checks(trust)["prod promotion"][0]
    assert "not one prod trusts" in promoted.checks(trust)["prod promotion"][1]
    result = verify_release(
        promoted.b.root,
        prod.public_key,
        require=(GATES, APPROVED),
        model_name="credit-prod",
        version="1",
        trust=trust,
    )
    failed = {c.name for c in result.checks if not c.ok}
    assert not result.ok and {"gate verdict", "approval", "prod promotion"} <= failed


def test_a_version_without_any_promotion_statement_is_refused(
    tmp_path: Path, staging: KeyPair, prod: KeyPair
) -> None:
    bundle = Bundle(tmp_path / "model", staging)
    bundle.add(bundle.verdict())
    bundle.add(bundle.approval())
    checks = Promoted(bundle, prod).checks()
    assert checks["prod promotion"] == (
        False,
        "no promotion statement signed with prod's key in environments/prod/",
    )
    assert not checks["prod gate verdict"][0] and not checks["prod approval"][0]
    assert (bundle.root / ATTESTATION).is_dir()


def test_a_promoted_version_without_prods_own_model_signature_is_refused(promoted: Promoted) -> None:
    promoted.signature.unlink()
    ok, detail = promoted.checks()["prod model signature"]
    assert not ok and f"{PROD_SIGNATURE}, named by" in detail and "is missing" in detail


def test_a_prod_model_signature_made_with_the_source_key_is_refused(
    tmp_path: Path, staging: KeyPair, prod: KeyPair
) -> None:
    bundle = Bundle(tmp_path / "model", staging)
    promoted = Promoted(bundle, prod)
    promoted.add(promoted.promotion(signed_with=staging.private_key))  # named by digest, signed by prod
    promoted.add(promoted.verdict())
    promoted.add(promoted.approval())
    checks = promoted.checks()
    assert checks["prod promotion"][0], checks
    ok, detail = checks["prod model signature"]
    assert not ok and "model-signing verification failed" in detail


def test_a_file_changed_after_prod_signed_the_bundle_breaks_prods_model_signature(promoted: Promoted) -> None:
    assert promoted.checks()["prod model signature"][0]
    config = promoted.b.root / ATTESTATION / "config.json"
    config.write_text('{"changed": true}')
    ok, detail = promoted.checks()["prod model signature"]
    assert not ok and "attestation/config.json" in detail


def test_a_prod_model_signature_other_than_the_one_the_promotion_names_is_refused(
    promoted: Promoted,
) -> None:
    sign_bundle(
        promoted.b.root, promoted.prod.private_key, promoted.signature
    )  # valid, but not the named one
    ok, detail = promoted.checks()["prod model signature"]
    assert not ok and "does not match the SHA-256 signed in" in detail


def _registry_with_a_version(root: Path, folder: Path) -> str:
    """The URI of a SQLite registry (its own artifact store) holding `folder` as ``credit`` version 1."""
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment("releases", artifact_location=(root / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    Registry(uri).create_version("credit", log_bundle(uri, run_id, folder), run_id, {"onnx_sha256": "o1"})
    return uri


def test_a_version_copied_into_another_registry_lands_there_with_its_files_intact_and_is_found_again(
    tmp_path: Path,
) -> None:
    released = tmp_path / "released"
    (released / ATTESTATION).mkdir(parents=True)
    (released / MODEL).write_bytes(b"onnx bytes")
    (released / ATTESTATION / "config.json").write_text("{}")
    (released / "evidence").mkdir()
    (released / "evidence" / "approval-1.dsse.json").write_text("{}")
    staging_uri = _registry_with_a_version(tmp_path / "staging", released)
    verified = tmp_path / "verified"  # the source version as downloaded and verified, plus what is not copied
    shutil.copytree(released, verified)
    (verified / ENVIRONMENTS / "staging").mkdir(parents=True)
    (verified / ENVIRONMENTS / "staging" / "x.dsse.json").write_text("{}")
    (verified / MLFLOW_META).write_text("name: credit")
    source = Source("staging", "credit", "1", staging_uri)
    prod_uri = f"sqlite:///{tmp_path}/prod.db"
    ws = Workspace.at(tmp_path / "prod-workspace")

    def copy() -> CopyRecord:
        return copy_version(
            source,
            verified,
            model_name="credit-prod",
            tracking_uri=prod_uri,
            experiment="promotions",
            ws=ws,
            flow_run_id="flow-run",
        )

    first = copy()
    assert (first.method, first.reused) == ("download and register", False)
    prod = Registry(prod_uri)
    found = prod.version(ModelRef("credit-prod", first.registered.version, None))
    assert found is not None and found.tags[PROMOTED_FROM] == "staging:credit/1"
    assert found.tags["onnx_sha256"] == "o1" and INCOMPLETE in found.tags
    assert Registry(staging_uri).version(ModelRef("credit-prod", "1", None)) is None

    landed = download_bundle("credit-prod", first.registered.version, prod_uri, tmp_path / "download")
    assert isinstance(landed, Path), landed
    assert signed_files(landed) == signed_files(released)
    assert evidence_files(landed) == evidence_files(released)
    assert not (landed / ENVIRONMENTS).exists() and not (landed / MLFLOW_META).exists()

    again = copy()
    assert again.reused and again.registered.version == first.registered.version
    assert [v.version for v in prod.find_versions("credit-prod")] == [first.registered.version]
