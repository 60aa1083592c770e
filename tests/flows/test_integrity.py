"""Integrity end to end: a released model verifies, and every kind of tampering is caught."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from attestflow import context as context_module
from attestflow.audit import AuditLog
from attestflow.digests import file_digest
from attestflow.dsse import dsse_verify
from attestflow.errors import GateFailedError
from attestflow.keys import load_public_key
from attestflow.lineage import CodeRevision
from attestflow.outcomes import ReleaseSummary
from attestflow.provenance import PREDICATE_TYPE, STATEMENT_TYPE
from attestflow.tracking import fluent_uri
from attestflow.workspace import Workspace
from flows import release as release_module
from flows.cli import app
from tasks.promote import promote
from tests.conftest import ExampleRepo, make_example_repo


@dataclass
class Released:
    repo: ExampleRepo
    config: Path
    summary: ReleaseSummary
    artifacts: Path
    """Local folder of the registered version's logged model."""

    @property
    def uri(self) -> str:
        return Workspace.at(self.repo.workspace).mlflow_uri

    @property
    def public_key(self) -> Path:
        return self.repo.workspace / "keys" / "signing-key.pub.pem"

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def verify(self, target: str = "models:/tiny-credit@champion") -> tuple[int, dict]:
        result = CliRunner().invoke(app, ["verify", target, "--config", str(self.config), "--json"])
        return result.exit_code, json.loads(result.output) if result.output.startswith("{") else {}


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Released:
    repo = make_example_repo(tmp_path_factory.mktemp("integrity") / "repo")
    config = repo.write_config()
    summary = release_module.release(config_path=str(config))
    client = MlflowClient(Workspace.at(repo.workspace).mlflow_uri, Workspace.at(repo.workspace).mlflow_uri)
    mv = client.get_model_version("tiny-credit", summary.registration.version)
    model_id = str(mv.source).rsplit("/", 1)[-1]
    artifacts = Path(urlparse(client.get_logged_model(model_id).artifact_location).path)
    return Released(repo, config, summary, artifacts)


@contextmanager
def tampered(path: Path) -> Iterator[Path]:
    """Let the test change `path` (or its folder), then put the original back.

    The original waits outside the registered folder: a file left beside it would itself be
    an unsigned file, which verify refuses.
    """
    backup = Path(tempfile.mkdtemp(prefix="attestflow-tampered-")) / path.name
    if path.is_dir():
        shutil.copytree(path, backup)
    else:
        shutil.copy2(path, backup)
    try:
        yield path
    finally:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        shutil.move(backup, path)
        backup.parent.rmdir()


def _failed(report: dict) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}


def test_a_released_model_verifies_with_every_check(released: Released) -> None:
    code, report = released.verify()
    assert code == 0, report
    assert {c["name"] for c in report["checks"]} == {
        "aibom",
        "format",
        "files",
        "signature",
        "provenance signature",
        "provenance subject",
        "registry tags",
        "data snapshot",
        "gate verdict",
        "approval",
    }
    assert all(c["ok"] for c in report["checks"])


def test_provenance_is_an_in_toto_slsa_statement_about_the_registered_onnx(released: Released) -> None:
    envelope = json.loads((released.artifacts / "attestation/provenance.dsse.json").read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    stmt = dsse_verify(envelope, load_public_key(released.public_key))
    assert stmt["_type"] == STATEMENT_TYPE and stmt["predicateType"] == PREDICATE_TYPE
    subjects = {s["name"]: s["digest"]["sha256"] for s in stmt["subject"]}
    assert subjects["model.onnx"] == file_digest(released.artifacts / "model.onnx").value
    build = stmt["predicate"]["buildDefinition"]
    assert set(build) >= {"buildType", "externalParameters", "internalParameters", "resolvedDependencies"}
    assert build["externalParameters"]["config_sha256"] == released.repo.config().digest().value
    deps = {d["name"].split(":")[0]: d for d in build["resolvedDependencies"]}
    assert deps["data"]["digest"]["md5"] == released.summary.snapshot.dvc_md5
    assert deps["data"]["digest"]["sha256"] == released.summary.snapshot.manifest_digest.value
    assert (
        deps["base_checkpoint"]["digest"]["sha256"] == released.summary.training.base_checkpoint_digest.value
    )
    assert "gitCommit" in deps["code"]["digest"] and "requirements.lock" in deps
    assert len(deps["python-environment"]["digest"]["sha256"]) == 64
    assert deps["code"]["annotations"]["signed"] is False  # the test repository's commits are unsigned
    run = stmt["predicate"]["runDetails"]
    assert run["builder"]["id"] and run["metadata"]["invocationId"] == released.summary.flow_run_id
    assert run["metadata"]["startedOn"] <= run["metadata"]["finishedOn"]
    assert build["externalParameters"]["triggered_by"].startswith("user:")


@pytest.mark.parametrize(
    "rel",
    ["model.onnx", "attestation/config.json", "attestation/data_manifest.json", "attestation/metrics.json"],
)
def test_flipping_one_byte_of_any_file_fails_verify_and_promotion(released: Released, rel: str) -> None:
    with tampered(released.artifacts / rel) as path:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        code, report = released.verify()
        assert code == 1
        assert f"{rel} does not match its signed SHA-256" in _failed(report)["files"]
        with pytest.raises(GateFailedError, match="promotion to models:/tiny-credit/1 refused"):
            audit = AuditLog.of(released.repo.workspace)
            promote(
                "tiny-credit", "1", "champion", "previous", released.uri, released.public_key, audit, "test"
            )


def test_replacing_the_onnx_with_another_valid_onnx_fails(released: Released, tmp_path: Path) -> None:
    from attestflow.config import ExportOnnxConfig
    from tasks.export_onnx import export_onnx

    other = export_onnx(
        ExportOnnxConfig(), released.repo.base_checkpoint, tmp_path, released.repo.config().data
    )
    with tampered(released.artifacts / "model.onnx") as path:
        shutil.copy(other.onnx_path, path)
        code, report = released.verify()
        failed = _failed(report)
        assert code == 1
        assert {"files", "signature", "provenance subject", "registry tags"} <= failed.keys()
        assert "format" not in failed


def test_editing_the_provenance_fails(released: Released) -> None:
    with tampered(released.artifacts / "attestation/provenance.dsse.json") as path:
        import base64

        env = json.loads(path.read_text())
        stmt = json.loads(base64.b64decode(env["payload"]))
        stmt["predicate"]["buildDefinition"]["externalParameters"]["triggered_by"] = "user:mallory"
        env["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
        path.write_text(json.dumps(env))
        code, report = released.verify()
        assert code == 1
        assert "no signature in the envelope verifies" in _failed(report)["provenance signature"]


def test_dropping_a_file_fails(released: Released) -> None:
    with tampered(released.artifacts / "attestation/data_manifest.json") as path:
        path.unlink()
        code, report = released.verify()
        assert code == 1
        assert "attestation/data_manifest.json is missing" in _failed(report)["files"]


def test_a_snapshot_missing_from_the_dvc_remote_fails(released: Released) -> None:
    md5 = released.summary.snapshot.dvc_md5
    obj = Workspace.at(released.repo.workspace).dvc_remote / "files" / "md5" / md5[:2] / md5[2:]
    with tampered(obj) as path:
        path.unlink()
        code, report = released.verify()
        assert code == 1
        assert "is not in the remote" in _failed(report)["data snapshot"]


def test_a_rewritten_registry_tag_fails(released: Released) -> None:
    client = released.client()
    original = released.summary.registration.tags["onnx_sha256"]
    client.set_model_version_tag("tiny-credit", "1", "onnx_sha256", "0" * 64)
    try:
        code, report = released.verify("models:/tiny-credit/1")
        assert code == 1 and "onnx_sha256" in _failed(report)["registry tags"]
    finally:
        client.set_model_version_tag("tiny-credit", "1", "onnx_sha256", original)


def test_a_key_other_than_the_trusted_one_fails(released: Released, tmp_path: Path) -> None:
    from attestflow.keys import ensure_keypair

    other = ensure_keypair(tmp_path / "other")
    result = CliRunner().invoke(
        app,
        [
            "verify",
            "models:/tiny-credit/1",
            "--config",
            str(released.config),
            "--public-key",
            str(other.public_key),
        ],
    )
    assert result.exit_code == 1
    assert "FAIL signature" in result.output and "FAIL provenance signature" in result.output


def test_verify_refuses_bad_model_uris_with_exit_2(released: Released) -> None:
    for uri in ("runs:/abc/model", "models:/tiny-credit/999", "models:/nope@champion"):
        result = CliRunner().invoke(app, ["verify", uri, "--config", str(released.config)])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output


def test_the_private_key_is_owner_only_and_never_in_the_evidence(released: Released) -> None:
    private = released.repo.workspace / "keys" / "signing-key.pem"
    assert (private.stat().st_mode & 0o777) == 0o600
    secret = private.read_text().strip().splitlines()[1]
    for path in released.artifacts.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="ignore")


def test_the_registered_folder_is_the_signed_folder_and_upstream_model_signing_verifies_it(
    released: Released,
) -> None:
    import mlflow.pyfunc
    import model_signing

    bundle = released.summary.signature.bundle_dir
    stored = {p.relative_to(released.artifacts) for p in released.artifacts.rglob("*") if p.is_file()}
    stored.discard(Path("registered_model_meta"))  # MLflow's label, written by any models:/ load
    evidence = {p for p in stored if p.parts[0] == "evidence"}  # signed after signing, each on its own
    assert evidence
    signed = stored - evidence
    assert signed == {p.relative_to(bundle) for p in bundle.rglob("*") if p.is_file()}
    assert all(file_digest(released.artifacts / p) == file_digest(bundle / p) for p in signed)
    assert {Path("MLmodel"), Path("conda.yaml"), Path("input_example.json")} <= signed
    outside = [released.artifacts / "evidence", released.artifacts / "registered_model_meta"]
    (
        model_signing.verifying.Config()
        .use_elliptic_key_verifier(public_key=released.public_key)
        .set_hashing_config(model_signing.hashing.Config().set_ignored_paths(paths=outside))
        .set_ignore_unsigned_files(False)
        .verify(released.artifacts, released.artifacts / "attestation/model.sig")
    )
    with fluent_uri(released.uri):
        model = mlflow.pyfunc.load_model("models:/tiny-credit/1")
    example = model.input_example
    assert example is not None
    assert len(next(iter(model.predict(example).values()))) == len(next(iter(example.values())))
    assert (released.artifacts / "registered_model_meta").is_file()  # MLflow wrote it into the store
    code, report = released.verify("models:/tiny-credit/1")
    assert code == 0, report


def test_an_unsigned_mlmodel_pointing_at_another_onnx_file_fails_verify(
    released: Released, tmp_path: Path
) -> None:
    from attestflow.config import ExportOnnxConfig
    from tasks.export_onnx import export_onnx

    other = export_onnx(
        ExportOnnxConfig(), released.repo.base_checkpoint, tmp_path, released.repo.config().data
    )
    evil = released.artifacts / "evil.onnx"
    with tampered(released.artifacts / "MLmodel") as mlmodel:
        shutil.copy(other.onnx_path, evil)
        mlmodel.write_text(mlmodel.read_text().replace("data: model.onnx", "data: evil.onnx"))
        try:
            result = CliRunner().invoke(
                app, ["verify", "models:/tiny-credit/1", "--config", str(released.config)]
            )
        finally:
            evil.unlink()
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "FAIL signature" in result.output and "FAIL files" in result.output
    assert "evil.onnx is not covered by the signature" in result.output


def test_an_extra_file_in_the_registered_folder_fails_verify(released: Released) -> None:
    with tampered(released.artifacts / "attestation") as folder:
        (folder / "notes.txt").write_text("unsigned")
        code, report = released.verify()
    assert code == 1
    assert _failed(report)["files"] == "attestation/notes.txt is not covered by the signature"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_fifo_or_symlink_in_the_registered_folder_fails_verify_without_blocking(
    released: Released, kind: str
) -> None:
    with tampered(released.artifacts / "attestation") as folder:
        if kind == "fifo":
            os.mkfifo(folder / "pipe")
        else:
            (folder / "pipe").symlink_to("/dev/zero")
        code, report = released.verify()
    assert code == 1
    what = "a FIFO" if kind == "fifo" else "a symlink"
    assert _failed(report)["files"] == (
        f"refused before downloading, the registered folder holds: attestation/pipe is {what}"
    )


def test_a_download_error_is_a_failed_check_with_its_reason(
    released: Released, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.artifacts

    def fail(**kwargs: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", fail)
    result = CliRunner().invoke(app, ["verify", "models:/tiny-credit/1", "--config", str(released.config)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "cannot download models:/tiny-credit/1: [Errno 28] No space left on device" in result.output


def test_a_release_copied_by_hand_under_another_model_name_fails_verify(released: Released) -> None:
    client = released.client()
    source = client.get_model_version("tiny-credit", "1")
    experiment = client.get_logged_model(str(source.source).rsplit("/", 1)[-1]).experiment_id
    copied = client.create_logged_model(experiment_id=experiment, name="copied")
    client.log_model_artifacts(copied.model_id, str(released.artifacts))
    client.finalize_logged_model(copied.model_id, "READY")
    client.create_registered_model("credit-default")
    try:
        client.create_model_version("credit-default", copied.artifact_location, tags=source.tags)
        code, report = released.verify("models:/credit-default/1")
    finally:
        client.delete_registered_model("credit-default")
    assert code == 1
    failed = _failed(report)
    assert (
        failed.pop("provenance subject")
        == "the provenance is about model 'tiny-credit', not 'credit-default'"
    )
    assert set(failed) == {"gate verdict", "approval"}  # the signed evidence names the model it is about
    assert all("is about model 'tiny-credit', not 'credit-default'" in why for why in failed.values())


def test_running_the_same_release_again_yields_the_same_version(released: Released) -> None:
    again = release_module.release(config_path=str(released.config))
    assert again.registration.reused
    assert again.registration.version == released.summary.registration.version
    assert len(released.client().search_model_versions("name='tiny-credit'")) == 1


def test_a_dirty_work_tree_is_refused_before_any_work(
    released: Released, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context_module, "code_revision", lambda path: CodeRevision("abc123", dirty=True))
    config = released.repo.write_config("dirty.yaml", sign={"allow_dirty": False}, fine_tune={"lr": 0.02})
    before = set(os.listdir(Workspace.at(released.repo.workspace).training))
    with pytest.raises(GateFailedError, match="uncommitted changes"):
        release_module.release(config_path=str(config))
    assert set(os.listdir(Workspace.at(released.repo.workspace).training)) == before


def test_evaluate_loads_a_registered_model_only_after_verifying_it(released: Released) -> None:
    args = ["evaluate", "models:/tiny-credit/1", "--config", str(released.config)]
    ok = CliRunner().invoke(app, args)
    assert ok.exit_code == 0, ok.output
    with tampered(released.artifacts / "model.onnx") as path:
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x01
        path.write_bytes(bytes(data))
        refused = CliRunner().invoke(app, args)
        assert refused.exit_code == 1
        assert "failed verification" in refused.output and "model.onnx does not match" in refused.output
