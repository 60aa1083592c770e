"""Unsafe formats are refused by content before anything unpickles them."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from attestflow.errors import BadInputError
from attestflow.formats import Format, detect_format, require_safe_weights
from attestflow.onnx_check import check_onnx
from attestflow.tabular import TabularMLP, checkpoint_from_state_dict, load_checkpoint
from tests.conftest import ExampleRepo

ALLOWED = frozenset({"ai.onnx", "ai.onnx.ml"})


class Exploit:
    """A pickle payload whose loading would create a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _malicious(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"weights": Exploit(marker)}, protocol=4))
    return path


def _refuse(path: Path, tmp_path: Path, allow: bool = False) -> None:
    require_safe_weights(
        path, allow_pickle_import=allow, convert_dir=tmp_path / "conv", convert=checkpoint_from_state_dict
    )


@pytest.mark.parametrize("name", ["base.pt", "base.safetensors", "model.onnx", "weights.bin"])
def test_a_malicious_pickle_is_refused_whatever_its_name(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    path = _malicious(tmp_path / name, marker)
    assert detect_format(path) is Format.PICKLE
    with pytest.raises(BadInputError, match=rf"{name}: refused: it is a pickle file"):
        _refuse(path, tmp_path)
    assert not marker.exists()


def test_an_allowed_import_still_refuses_a_malicious_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _malicious(tmp_path / "base.pkl", marker)
    with pytest.raises(BadInputError, match=r"picklescan found dangerous imports: .*system"):
        _refuse(path, tmp_path, allow=True)
    assert not marker.exists()


def test_a_malicious_torch_zip_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "base.safetensors"
    torch.save({"w": Exploit(marker)}, path)
    assert detect_format(path) is Format.TORCH_ZIP
    with pytest.raises(BadInputError, match="torch-zip"):
        _refuse(path, tmp_path)
    with pytest.raises(BadInputError, match="dangerous imports"):
        _refuse(path, tmp_path, allow=True)
    assert not marker.exists()


def test_an_allowed_clean_torch_checkpoint_is_imported_as_safetensors(tmp_path: Path) -> None:
    model = TabularMLP(7, (8, 4))
    src = tmp_path / "base.pt"
    torch.save(model.state_dict(), src)
    out, record = require_safe_weights(
        src, allow_pickle_import=True, convert_dir=tmp_path / "conv", convert=checkpoint_from_state_dict
    )
    assert record is not None and record.scanner == "picklescan"
    assert detect_format(out) is Format.SAFETENSORS
    loaded = load_checkpoint(out)
    torch.testing.assert_close(loaded.state_dict()["net.0.weight"], model.state_dict()["net.0.weight"])


def test_safetensors_and_onnx_are_recognised_by_content(example_repo: ExampleRepo, tmp_path: Path) -> None:
    renamed = tmp_path / "weights.pt"
    shutil.copy(example_repo.base_checkpoint, renamed)
    assert detect_format(renamed) is Format.SAFETENSORS
    assert (
        require_safe_weights(
            renamed, allow_pickle_import=False, convert_dir=tmp_path, convert=checkpoint_from_state_dict
        )[0]
        == renamed
    )
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(BadInputError, match="not a safetensors checkpoint"):
        _refuse(junk, tmp_path)


def _onnx(path: Path, domain: str = "", external: str | None = None) -> Path:
    node = helper.make_node("Relu" if not domain else "Evil", ["x"], ["y"], domain=domain)
    weights = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    if external:
        weights.data_location = TensorProto.EXTERNAL
        weights.ClearField("float_data")
        weights.external_data.add(key="location", value=external)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[weights],
    )
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


def test_onnx_checks_pass_a_plain_model(tmp_path: Path) -> None:
    result = check_onnx(_onnx(tmp_path / "m.onnx"), allowed_domains=ALLOWED)
    assert result.ok, result.problems


def test_onnx_with_a_custom_operator_domain_is_refused(tmp_path: Path) -> None:
    result = check_onnx(_onnx(tmp_path / "m.onnx", domain="com.evil"), allowed_domains=ALLOWED)
    assert not result.ok
    assert "com.evil" in result.problems[0]


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd"])
def test_onnx_external_data_escaping_its_folder_is_refused(tmp_path: Path, location: str) -> None:
    result = check_onnx(_onnx(tmp_path / "m.onnx", external=location), allowed_domains=ALLOWED)
    assert any("escapes the model folder" in p for p in result.problems)


def test_a_pickle_named_onnx_is_not_onnx(tmp_path: Path) -> None:
    path = _malicious(tmp_path / "m.onnx", tmp_path / "pwned")
    result = check_onnx(path, allowed_domains=ALLOWED)
    assert not result.ok and "not an ONNX model" in result.problems[0]
    assert not (tmp_path / "pwned").exists()
