"""Signed evidence end to end: no version becomes champion without a signed PASSED verdict and approval.

One workspace for the module: v1 released (champion), v2 refused by a gate policy it cannot
meet (registered, with a FAILED verdict), v3 promoted then rejected by the canary.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from attestflow.audit import AuditLog
from attestflow.errors import GateFailedError
from attestflow.evidence import APPROVAL, EVIDENCE_DIR, VSA, approval_statement
from attestflow.lineage import CodeRevision
from attestflow.outcomes import ApprovalRecord, ReleaseSummary
from attestflow.records import Invocation, RegistrationRecord
from attestflow.settings import KeySpec
from attestflow.tracking import fluent_uri
from attestflow.workspace import Workspace
from flows.cli import app
from flows.release import release
from tasks.attest import attest
from tests.conftest import ExampleRepo, make_example_repo


@dataclass
class Story:
    repo: ExampleRepo
    config: Path
    first: ReleaseSummary

    @property
    def uri(self) -> str:
        return Workspace.at(self.repo.workspace).mlflow_uri

    @property
    def public_key(self) -> Path:
        return self.repo.workspace / "keys" / "signing-key.pub.pem"

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def champion(self) -> str:
        return str(self.client().get_model_version_by_alias("tiny-credit", "champion").version)

    def artifacts(self, version: str) -> Path:
        """The registered version's artifact folder on disk."""
        model_id = str(self.client().get_model_version("tiny-credit", version).source).rsplit("/", 1)[-1]
        return Path(urlparse(self.client().get_logged_model(model_id).artifact_location).path)

    def cli(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, [*args, "--config", str(self.config)])
        return result.exit_code, result.output

    def verify(self, *args: str) -> tuple[int, dict[str, tuple[bool, str]]]:
        code, out = self.cli("verify", *args, "--json")
        report = json.loads(out) if out.startswith("{") else {"checks": []}
        return code, {c["name"]: (c["ok"], c["detail"]) for c in report["checks"]}


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    repo = make_example_repo(tmp_path_factory.mktemp("evidence") / "repo")
    config = repo.write_config()
    first = release(config_path=str(config))
    strict = repo.write_policy(
        "strict-gates.yaml", performance={"thresholds": [{"metric": "accuracy", "threshold": 0.999}]}
    )
    with pytest.raises(GateFailedError, match="gate performance"):
        release(config_path=str(repo.write_config("strict.yaml", gates={"policy": str(strict)})))
    slow = repo.write_config("slow.yaml", fine_tune={"lr": 0.01}, canary={"max_latency_ratio": 1e-6})
    with pytest.raises(GateFailedError, match="canary of v3"):
        release(config_path=str(slow))
    return Story(repo, config, first)


def test_rollback_to_a_gate_failed_version_is_refused_naming_the_verdict_and_audited(story: Story) -> None:
    assert story.champion() == "1"
    code, out = story.cli("rollback", "--to", "2", "--reason", "checked by hand")
    assert code == 1, out
    assert "rollback to models:/tiny-credit/2 refused: gate verdict: the signed gate verdict is FAILED" in out
    assert "performance/accuracy" in out and "no signed approval" in out
    assert story.champion() == "1"
    last = AuditLog.of(story.repo.workspace).entries()[-1]
    assert last["event"] == "rollback_refused" and last["version"] == "2"
    assert any(
        f.startswith("gate verdict: the signed gate verdict is FAILED") for f in last["details"]["failures"]
    )


def test_verify_shows_the_gate_verdict_and_the_approval(story: Story) -> None:
    code, checks = story.verify("models:/tiny-credit/1")
    assert code == 0, checks
    assert checks["gate verdict"][0] and "PASSED" in checks["gate verdict"][1]
    assert checks["approval"][0] and "policy:auto" in checks["approval"][1]
    code, checks = story.verify("models:/tiny-credit/2")
    assert code == 1 and not checks["gate verdict"][0] and not checks["approval"][0]
    assert checks["files"][0] and checks["provenance signature"][0]
    code, checks = story.verify("models:/tiny-credit/2", "--require", "provenance")
    assert code == 0 and "gate verdict" not in checks
    code, checks = story.verify("models:/tiny-credit/1", "--policy", str(story.repo.root / "gates.yaml"))
    assert code == 0, checks
    code, checks = story.verify(
        "models:/tiny-credit/1", "--policy", str(story.repo.root / "strict-gates.yaml")
    )
    assert code == 1 and "no signed verification summary under gate policy" in checks["gate verdict"][1]
    code, out = story.cli("verify", "models:/tiny-credit/1", "--require", "gates,nonsense")
    assert code == 2 and "--require takes" in out


def test_a_canary_rejected_version_is_refused_until_a_new_approval(story: Story, tmp_path: Path) -> None:
    code, out = story.cli("rollback", "--to", "3", "--reason", "checked by hand")
    assert code == 1 and "approval: the canary rejected this model.onnx" in out, out
    assert story.champion() == "1"
    evidence = sorted(p.name.split("-")[0] for p in (story.artifacts("3") / EVIDENCE_DIR).iterdir())
    assert evidence == [
        "approval",
        "canary",
        "model_card",
        "model_card",
        "verification_summary",
        "verification_summary",
    ]  # + gates.json, + card.md

    # A new signed approval of v3's bundle (as a re-release of the same inputs would add) lets it back.
    registered = story.client().get_model_version("tiny-credit", "3")
    record = RegistrationRecord("tiny-credit", "3", "models:/tiny-credit/3", str(registered.run_id))
    at = datetime.now(UTC).isoformat(timespec="seconds")
    decision = ApprovalRecord(
        True, "user:ann", "canary re-run by hand", registered.tags["bundle_sha256"], at, "human"
    )
    invocation = Invocation("c.yaml", [], "by-hand", at, "user:bob", CodeRevision("abc", False))
    attest(
        approval_statement(decision, record, invocation),
        record,
        key=KeySpec(),  # the workspace's key pair
        workspace_root=story.repo.workspace,
        tracking_uri=story.uri,
        out_dir=tmp_path,
    )
    code, out = story.cli("rollback", "--to", "3", "--reason", "checked by hand")
    assert code == 0, out
    assert story.champion() == "3"
    code, out = story.cli("rollback", "--to", "1", "--reason", "checked by hand")
    assert code == 0 and story.champion() == "1", out


def test_an_edited_gates_json_or_summary_fails_verify(story: Story) -> None:
    (gates_json,) = (story.artifacts("1") / EVIDENCE_DIR).glob("verification_summary-*.gates.json")
    original = gates_json.read_bytes()
    try:
        edited = original.replace(b'"passed": true', b'"passed": false', 1)
        assert edited != original
        gates_json.write_bytes(edited)
        code, checks = story.verify("models:/tiny-credit/1")
        assert code == 1 and "does not match the SHA-256 signed in" in checks["gate verdict"][1]
    finally:
        gates_json.write_bytes(original)

    (summary,) = (story.artifacts("1") / EVIDENCE_DIR).glob("verification_summary-*.dsse.json")
    original = summary.read_bytes()
    try:
        envelope = json.loads(original)
        stmt = json.loads(base64.b64decode(envelope["payload"]))
        stmt["predicate"]["policy"]["digest"]["sha256"] = "0" * 64
        envelope["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
        summary.write_text(json.dumps(envelope))
        code, checks = story.verify("models:/tiny-credit/1")
        assert code == 1 and "no signature in the envelope verifies" in checks["gate verdict"][1]
    finally:
        summary.write_bytes(original)


def test_the_champions_evidence_verifies_offline_with_the_public_key_alone(
    story: Story, tmp_path: Path
) -> None:
    import mlflow
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    with fluent_uri(story.uri):
        folder = Path(
            mlflow.artifacts.download_artifacts(
                "models:/tiny-credit@champion", dst_path=str(tmp_path / "download")
            )
        )
    key = tmp_path / "trusted.pub.pem"
    shutil.copy(story.public_key, key)

    result = CliRunner().invoke(app, ["verify", str(folder), "--public-key", str(key)])
    assert result.exit_code == 0, result.output
    assert "ok   gate verdict" in result.output and "ok   approval" in result.output

    public = load_pem_public_key(key.read_bytes())
    der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    trusted = SSlibKey.from_crypto(public, keyid="sha256:" + hashlib.sha256(der).hexdigest())
    seen = set()
    for path in (folder / EVIDENCE_DIR).glob("*.dsse.json"):
        envelope = Envelope.from_dict(json.loads(path.read_text()))
        envelope.verify([trusted], 1)
        stmt = json_format.ParseDict(json.loads(envelope.payload), statement_pb2.Statement())
        seen.add(stmt.predicate_type)
    assert {VSA, APPROVAL} <= seen

    # The same folder with its model.onnx replaced: the evidence no longer names what is there.
    (folder / "model.onnx").write_bytes(b"something else")
    result = CliRunner().invoke(app, ["verify", str(folder), "--public-key", str(key), "--require", "gates"])
    assert result.exit_code == 1 and "about another model.onnx" in result.output
