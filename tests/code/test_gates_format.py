"""Gate `format`: only an ONNX model with allowed operator domains and contained external data."""

from __future__ import annotations

import pickle
from pathlib import Path

import onnx
from onnx import numpy_helper

from attestflow.onnx_check import CHECKS
from tasks.gates import format as format_gate
from tests.code.planted import Lab, bundled_policy, with_custom_op


def test_an_exported_model_passes_every_check(lab: Lab) -> None:
    decisions = format_gate.gate(lab.evaluate(lab.good_onnx), bundled_policy())
    assert [d.metric for d in decisions] == ["invalid_onnx", "disallowed_domains", "escaping_external_data"]
    assert all(d.passed for d in decisions), decisions


def test_a_custom_domain_operator_is_refused_by_name(lab: Lab, tmp_path: Path) -> None:
    custom = with_custom_op(lab.good_onnx, tmp_path / "model.onnx")
    by_metric = {d.metric: d for d in format_gate.gate(lab.evaluate(custom), bundled_policy())}
    assert by_metric["invalid_onnx"].passed
    assert not by_metric["disallowed_domains"].passed
    assert "'com.example.untrusted' is not allowed" in by_metric["disallowed_domains"].reason


def test_a_pickle_named_onnx_is_not_onnx(lab: Lab, tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    decisions = format_gate.gate(lab.evaluate(fake), bundled_policy())
    assert not any(d.passed for d in decisions)
    assert "model.onnx" in decisions[0].reason


def test_external_data_outside_the_model_folder_is_refused(lab: Lab, tmp_path: Path) -> None:
    model = onnx.load(str(lab.good_onnx))
    tensor = model.graph.initializer[0]
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    path = tmp_path / "model" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(model.SerializeToString())
    escaping = format_gate.gate(lab.evaluate(path), bundled_policy())[2]
    assert not escaping.passed and "'../../etc/passwd'" in escaping.reason


def test_more_checks_can_be_appended() -> None:
    assert [name for name, _ in CHECKS] == ["disallowed_domains", "escaping_external_data"]
