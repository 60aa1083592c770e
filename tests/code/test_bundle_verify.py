"""The signature covers every file a loader reads, and verify checks it before opening anything.

Each test builds a small signed bundle the way the sign stage lays it out (a real MLflow onnx
model folder, ``attestation/``, provenance, model-signing over every file) and shows one way
of tampering with it being refused: with a reason, without a hang and without a traceback.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest
from onnx import TensorProto, helper

from attestflow import verify as verify_module
from attestflow.bundle import (
    ATTESTATION,
    EVIDENCE,
    MLFLOW_META,
    MLMODEL,
    MODEL,
    PROVENANCE,
    PUBLIC_KEY,
    SIGNATURE,
    bundle_digest,
    list_bundle,
    sign_bundle,
    signed_files,
    unsafe_path,
)
from attestflow.digests import Digest, file_digest
from attestflow.dsse import dsse_sign
from attestflow.keys import KeyPair, ensure_keypair, load_private_key
from attestflow.provenance import resource, statement
from attestflow.verify import Verification, verify_bundle


def _onnx(op: str) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], op.lower(), [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return bytes(model.SerializeToString())


def _signed_bundle(folder: Path, keys: KeyPair, model_name: str = "sandbox") -> Path:
    """A bundle laid out and signed as `tasks.sign` does it, released as `model_name`."""
    import mlflow.onnx
    import onnx

    mlflow.onnx.save_model(
        onnx.load_from_string(_onnx("Relu")),
        str(folder),
        pip_requirements=["onnxruntime"],
        onnx_execution_providers=["CPUExecutionProvider"],
        save_as_external_data=False,
    )
    (folder / ATTESTATION).mkdir()
    (folder / ATTESTATION / "config.json").write_text(json.dumps({"model_name": model_name}))
    shutil.copy2(keys.public_key, folder / PUBLIC_KEY)
    stmt = statement(
        subjects=[
            resource(MODEL, {"sha256": file_digest(folder / MODEL).value}),
            resource("release-bundle", {"sha256": bundle_digest(signed_files(folder)).value}),
        ],
        external_parameters={"model_name": model_name},
        internal_parameters={},
        dependencies=[],
        builder_id="test",
        invocation_id="test",
        started_on="2024-01-01T00:00:00+00:00",
        finished_on="2024-01-01T00:00:01+00:00",
    )
    (folder / PROVENANCE).write_text(json.dumps(dsse_sign(stmt, load_private_key(keys.private_key))))
    sign_bundle(folder, keys.private_key)
    return folder


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return ensure_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, keys: KeyPair) -> Path:
    return _signed_bundle(tmp_path_factory.mktemp("pristine") / "bundle", keys)


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the signed bundle for one test to tamper with."""
    return Path(shutil.copytree(pristine, tmp_path / "bundle"))


def _verify(bundle: Path, keys: KeyPair, model_name: str | None = "sandbox") -> Verification:
    return verify_bundle(bundle, keys.public_key, check_data=False, model_name=model_name)


def _failed(result: Verification) -> dict[str, str]:
    return {c.name: c.detail for c in result.checks if not c.ok}


def _rewrite_manifest(bundle: Path, rename: dict[str, str]) -> None:
    """Rename entries in the signature's manifest (which breaks its signature, as a forger would)."""
    sig = json.loads((bundle / SIGNATURE).read_text())
    payload = json.loads(base64.b64decode(sig["dsseEnvelope"]["payload"]))
    for r in payload["predicate"]["resources"]:
        r["name"] = rename.get(r["name"], r["name"])
    sig["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    (bundle / SIGNATURE).write_text(json.dumps(sig))


def test_a_signed_bundle_verifies_with_every_file_signed(bundle: Path, keys: KeyPair) -> None:
    result = _verify(bundle, keys)
    assert result.ok, result.failures
    signed = json.loads(
        base64.b64decode(json.loads((bundle / SIGNATURE).read_text())["dsseEnvelope"]["payload"])
    )
    names = {r["name"] for r in signed["predicate"]["resources"]}
    assert names == list_bundle(bundle).files - {SIGNATURE}
    assert {MLMODEL, MODEL, "conda.yaml", "python_env.yaml", "requirements.txt", PROVENANCE} <= names


def test_upstream_model_signing_verifies_the_bundle_with_unsigned_files_not_ignored(
    bundle: Path, keys: KeyPair
) -> None:
    import model_signing

    (bundle / EVIDENCE).mkdir()
    (bundle / EVIDENCE / "statement.dsse.json").write_text("{}")
    (bundle / MLFLOW_META).write_text("model_name: sandbox\nmodel_version: '1'\n")
    (
        model_signing.verifying.Config()
        .use_elliptic_key_verifier(public_key=keys.public_key)
        .set_ignore_unsigned_files(False)
        .verify(bundle, bundle / SIGNATURE)
    )
    assert _verify(bundle, keys).ok


def test_an_unsigned_mlmodel_pointing_at_another_onnx_file_fails(bundle: Path, keys: KeyPair) -> None:
    import mlflow.onnx

    (bundle / "evil.onnx").write_bytes(_onnx("Neg"))
    mlmodel = bundle / MLMODEL
    mlmodel.write_text(mlmodel.read_text().replace(f"data: {MODEL}", "data: evil.onnx"))
    loaded = mlflow.onnx.load_model(str(bundle))
    assert loaded.graph.node[0].op_type == "Neg"  # what a loader would run if verify said yes

    result = _verify(bundle, keys)
    failed = _failed(result)
    assert not result.ok
    assert failed["signature"] == (
        "model-signing verification failed: the folder differs from what was signed "
        "(not signed: evil.onnx; changed: MLmodel)"
    )
    assert failed["files"] == "evil.onnx is not covered by the signature"


def test_an_edited_mlmodel_alone_fails(bundle: Path, keys: KeyPair) -> None:
    mlmodel = bundle / MLMODEL
    mlmodel.write_text(mlmodel.read_text() + "\nmetadata: {owner: mallory}\n")
    failed = _failed(_verify(bundle, keys))
    assert failed["files"] == f"{MLMODEL} does not match its signed SHA-256"
    assert failed["signature"].endswith("the folder differs from what was signed (changed: MLmodel)")


@pytest.mark.parametrize(
    "extra",
    ["notes.txt", "attestation/extra.json", ".gitignore", ".git/config", f"attestation/{MLFLOW_META}"],
)
def test_an_extra_file_anywhere_but_evidence_fails(bundle: Path, keys: KeyPair, extra: str) -> None:
    (bundle / extra).parent.mkdir(exist_ok=True)
    (bundle / extra).write_text("x")
    failed = _failed(_verify(bundle, keys))
    assert failed["files"] == f"{extra} is not covered by the signature"


@pytest.mark.parametrize("name", ["/proc/self/mem", "../x", "attestation/../../x", "./MLmodel", ""])
def test_a_manifest_naming_a_path_outside_the_bundle_is_refused_before_hashing(
    bundle: Path, keys: KeyPair, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (bundle.parent / "x").write_text("outside")
    _rewrite_manifest(bundle, {MLMODEL: name})
    opened: list[Path] = []
    real = verify_module.file_digest

    def recorded(path: Path, *args: str) -> Digest:
        opened.append(Path(path))
        return real(path, *args)

    monkeypatch.setattr(verify_module, "file_digest", recorded)

    failed = _failed(_verify(bundle, keys))
    assert (
        failed["files"] == f"refused before hashing: the signature names a path outside the bundle: {name!r}"
    )
    assert "signature" in failed
    assert all(p.resolve().is_relative_to(bundle.resolve()) for p in opened)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["attestation/pipe", MODEL, MLMODEL])
def test_a_fifo_in_the_folder_is_refused_without_blocking(bundle: Path, keys: KeyPair, where: str) -> None:
    (bundle / where).unlink(missing_ok=True)
    os.mkfifo(bundle / where)
    result = _verify(bundle, keys)
    assert not result.ok
    assert _failed(result) == {
        "signature": "not checked: the folder holds entries that are not plain files",
        "files": f"refused without opening: {where} is a FIFO",
    }


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("where", "target"), [(MODEL, "/proc/self/mem"), ("extra", "/dev/zero"), (ATTESTATION, "/")]
)
def test_a_symlink_in_the_folder_is_refused_without_following_it(
    bundle: Path, keys: KeyPair, where: str, target: str
) -> None:
    path = bundle / where
    if path.is_dir():
        shutil.rmtree(path)
    path.unlink(missing_ok=True)
    path.symlink_to(target)
    failed = _failed(_verify(bundle, keys))
    assert failed["files"] == f"refused without opening: {where} is a symlink"


def test_a_bundle_released_for_another_model_fails_for_this_one(bundle: Path, keys: KeyPair) -> None:
    failed = _failed(_verify(bundle, keys, model_name="credit-default"))
    assert failed == {"provenance subject": "the provenance is about model 'sandbox', not 'credit-default'"}


def test_a_missing_folder_is_a_failed_check(tmp_path: Path, keys: KeyPair) -> None:
    result = _verify(tmp_path / "absent", keys)
    assert not result.ok and "cannot list" in _failed(result)["files"]


@pytest.mark.parametrize(
    ("rel", "unsafe"),
    [
        ("model.onnx", False),
        ("attestation/config.json", False),
        ("/etc/passwd", True),
        ("a/../../b", True),
        ("a//b", True),
        ("a/./b", True),
        ("a\\..\\b", True),
        ("a/", True),
    ],
)
def test_unsafe_paths_are_told_apart_by_their_text(rel: str, unsafe: bool) -> None:
    assert unsafe_path(rel) is unsafe


def test_model_signing_mismatches_are_told_by_file_name_whatever_quotes_their_digests_hold() -> None:
    from attestflow.verify import _signing_failure

    digest = "Digest(algorithm='sha256', digest_value=b'\\x01\"\\'')"
    items = [
        "Extra files found in model 'bundle': evil.onnx, x.txt",
        f"Hash mismatch for 'MLmodel': Expected '{digest}', Actual '{digest}'",
    ]
    assert _signing_failure(ValueError(f"Signature mismatch: {items}")) == (
        "the folder differs from what was signed (not signed: evil.onnx, x.txt; changed: MLmodel)"
    )
    assert _signing_failure(ValueError("no signature verifies\nmore")) == "no signature verifies"
