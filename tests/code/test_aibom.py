"""The AI bill of materials: valid CycloneDX 1.6 by the upstream validator, and checked by `verify` against the bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from attestflow.aibom import MODEL_REF, BomInputs, build_aibom, validation_error, write_aibom
from attestflow.aibom_check import bom_libraries, read_bom
from attestflow.bundle import (
    AIBOM,
    ATTESTATION,
    MODEL,
    PROVENANCE,
    PUBLIC_KEY,
    bundle_digest,
    sign_bundle,
    signed_files,
)
from attestflow.digests import file_digest
from attestflow.dsse import dsse_sign
from attestflow.keys import KeyPair, ensure_keypair, load_private_key
from attestflow.provenance import resource, statement
from attestflow.verify import Verification, verify_bundle
from tests.code.compliance_planted import bom_inputs

ROOT = Path(__file__).resolve().parents[2]


def _inputs(onnx_sha256: str) -> BomInputs:
    return bom_inputs(
        onnx_sha256,
        model_name="sandbox",
        inputs={"features": ["batch", 2]},
        outputs={"logits": ["batch", 2]},
        dvc_md5="ef" * 16,
        base_model=("base_model.safetensors", "cd" * 32),
        metrics={"accuracy": 0.83, "roc_auc": 0.88},
    )


def _sign(folder: Path, keys: KeyPair) -> None:
    """Write the provenance (naming the lock the bundle holds) and sign every file, as `tasks.sign` does."""
    lock = file_digest(folder / ATTESTATION / "requirements.lock")
    stmt = statement(
        subjects=[
            resource(MODEL, {"sha256": file_digest(folder / MODEL).value}),
            resource("release-bundle", {"sha256": bundle_digest(signed_files(folder)).value}),
        ],
        external_parameters={"model_name": "sandbox"},
        internal_parameters={},
        dependencies=[resource("requirements.lock", {"sha256": lock.value})],
        builder_id="test",
        invocation_id="test",
        started_on="2024-01-01T00:00:00+00:00",
        finished_on="2024-01-01T00:00:01+00:00",
    )
    (folder / PROVENANCE).write_text(json.dumps(dsse_sign(stmt, load_private_key(keys.private_key))))
    sign_bundle(folder, keys.private_key)


def _onnx(path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return ensure_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, keys: KeyPair) -> Path:
    folder = tmp_path_factory.mktemp("pristine") / "bundle"
    (folder / ATTESTATION).mkdir(parents=True)
    _onnx(folder / MODEL)
    shutil.copy2(keys.public_key, folder / PUBLIC_KEY)
    write_aibom(folder, _inputs(file_digest(folder / MODEL).value), ROOT)
    _sign(folder, keys)
    return folder


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "bundle"))


def _aibom(result: Verification) -> tuple[bool, str]:
    check = next(c for c in result.checks if c.name == "aibom")
    return check.ok, check.detail


def _rewrite(bundle: Path, edit: Any, keys: KeyPair) -> None:
    """Edit the BOM's JSON and re-sign the whole bundle with the trusted key: only the BOM check can say no."""
    doc = json.loads((bundle / AIBOM).read_text())
    edit(doc)
    (bundle / AIBOM).write_text(json.dumps(doc))
    _sign(bundle, keys)


def test_the_bom_is_valid_cyclonedx_1_6_with_a_model_card_on_the_model(pristine: Path) -> None:
    text = (pristine / AIBOM).read_text()
    assert validation_error(text) is None
    doc = read_bom(pristine / AIBOM)
    model = next(c for c in doc["components"] if c["bom-ref"] == MODEL_REF)
    assert model["type"] == "machine-learning-model"
    assert model["hashes"] == [{"alg": "SHA-256", "content": file_digest(pristine / MODEL).value}]
    card = model["modelCard"]
    assert card["modelParameters"]["datasets"] == [{"ref": "dataset"}]
    assert card["considerations"]["ethicalConsiderations"]
    kinds = {c["type"] for c in doc["components"]}
    assert {"data", "library", "machine-learning-model"} <= kinds
    numpy = next(c for c in doc["components"] if c["name"] == "numpy")
    assert numpy["purl"].startswith("pkg:pypi/numpy@") and numpy["hashes"] and numpy["licenses"]
    assert (
        "pyspark" not in bom_libraries(doc) or bom_libraries(doc)["pyspark"][1] == "requirements-spark.lock"
    )


def test_an_invalid_model_card_object_is_refused_by_the_upstream_validator(pristine: Path) -> None:
    doc = json.loads((pristine / AIBOM).read_text())
    model = next(c for c in doc["components"] if c["bom-ref"] == MODEL_REF)
    model["modelCard"]["modelParameters"]["task"] = 42
    assert validation_error(json.dumps(doc)) is not None


def test_a_signed_bundle_with_its_bom_passes_the_aibom_check(bundle: Path, keys: KeyPair) -> None:
    result = verify_bundle(bundle, keys.public_key, check_data=False, model_name="sandbox")
    assert result.ok, result.failures
    ok, detail = _aibom(result)
    assert ok and "libraries at the pins of the recorded lock" in detail


def test_a_bom_whose_library_version_differs_from_the_lock_fails_verify(bundle: Path, keys: KeyPair) -> None:
    def bump(doc: dict[str, Any]) -> None:
        numpy = next(c for c in doc["components"] if c["name"] == "numpy")
        numpy["version"] = "0.0.1"

    _rewrite(bundle, bump, keys)
    result = verify_bundle(bundle, keys.public_key, check_data=False, model_name="sandbox")
    assert {c.name for c in result.checks if not c.ok} == {"aibom"}
    ok, detail = _aibom(result)
    assert not ok and "numpy==0.0.1 but requirements.lock pins" in detail


def test_a_bom_missing_a_locked_library_fails_verify(bundle: Path, keys: KeyPair) -> None:
    def drop(doc: dict[str, Any]) -> None:
        doc["components"] = [c for c in doc["components"] if c["name"] != "numpy"]

    _rewrite(bundle, drop, keys)
    ok, detail = _aibom(verify_bundle(bundle, keys.public_key, check_data=False))
    assert not ok and "numpy" in detail and "is not in the BOM" in detail


def test_a_bom_whose_model_hash_is_another_files_fails_verify(bundle: Path, keys: KeyPair) -> None:
    other = file_digest(bundle / PUBLIC_KEY).value

    def swap(doc: dict[str, Any]) -> None:
        model = next(c for c in doc["components"] if c["bom-ref"] == MODEL_REF)
        model["hashes"] = [{"alg": "SHA-256", "content": other}]

    _rewrite(bundle, swap, keys)
    result = verify_bundle(bundle, keys.public_key, check_data=False, model_name="sandbox")
    assert {c.name for c in result.checks if not c.ok} == {"aibom"}
    ok, detail = _aibom(result)
    assert not ok and "names another model.onnx" in detail


def test_a_lock_copy_other_than_the_recorded_one_fails_verify(bundle: Path, keys: KeyPair) -> None:
    _sign(bundle, keys)
    lock = bundle / ATTESTATION / "requirements.lock"
    lock.write_text(lock.read_text() + "\n")
    sign_bundle(bundle, keys.private_key)  # the provenance still names the original lock
    ok, detail = _aibom(verify_bundle(bundle, keys.public_key, check_data=False))
    assert not ok and "has the SHA-256 the provenance records" in detail


def test_an_invalid_bom_fails_verify_even_when_signed(bundle: Path, keys: KeyPair) -> None:
    _rewrite(bundle, lambda doc: doc["components"][0].update(type="spaceship"), keys)
    ok, detail = _aibom(verify_bundle(bundle, keys.public_key, check_data=False))
    assert not ok and "not valid CycloneDX 1.6" in detail


def test_a_bom_of_another_spec_version_fails_verify(bundle: Path, keys: KeyPair) -> None:
    _rewrite(bundle, lambda doc: doc.update(specVersion="9.9"), keys)
    ok, detail = _aibom(verify_bundle(bundle, keys.public_key, check_data=False))
    assert not ok and "specVersion" in detail


def test_build_refuses_to_write_an_invalid_bom(monkeypatch: pytest.MonkeyPatch) -> None:
    import attestflow.aibom as aibom

    monkeypatch.setattr(aibom, "_model_card", lambda inputs: {"modelParameters": {"task": ["not a string"]}})
    with pytest.raises(ValueError, match=r"not valid CycloneDX 1\.6"):
        build_aibom(_inputs("ab" * 32), {})
