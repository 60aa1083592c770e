"""Gate `performance`: absolute thresholds on the ONNX model's held-out metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.gates import performance
from tests.code.planted import Lab, bundled_policy, export, ignoring_input, linear_onnx


def test_a_good_model_passes_every_threshold_with_its_margin(lab: Lab) -> None:
    decisions = performance.gate(lab.evaluate(lab.good_onnx), bundled_policy())
    assert [d.metric for d in decisions] == ["accuracy", "f1", "roc_auc"]
    assert all(d.passed and d.margin > 0 for d in decisions), decisions
    assert decisions[0].margin == decisions[0].value - decisions[0].threshold
    assert decisions[0].policy_digest == str(bundled_policy().digest())


def test_a_model_that_ignores_its_input_is_refused(lab: Lab, tmp_path: Path) -> None:
    onnx_path, _ = export(ignoring_input(lab.good), tmp_path, lab.data)
    decisions = performance.gate(lab.evaluate(onnx_path), bundled_policy())
    assert not any(d.passed for d in decisions)
    by_metric = {d.metric: d for d in decisions}
    assert by_metric["roc_auc"].value == 0.5
    assert (
        "accuracy" in by_metric["accuracy"].reason and "below the minimum 0.8" in by_metric["accuracy"].reason
    )
    assert all(d.margin < 0 for d in decisions)


def test_a_model_that_cannot_run_on_the_data_fails_every_metric_with_the_reason(
    lab: Lab, tmp_path: Path
) -> None:
    three_features = linear_onnx(tmp_path / "model.onnx", np.ones((3, 2)), np.zeros(2))
    decisions = performance.gate(lab.evaluate(three_features), bundled_policy())
    assert len(decisions) == 3
    assert all(not d.passed and "ONNX Runtime cannot run model.onnx" in d.reason for d in decisions)


def test_a_file_that_is_not_onnx_is_never_run(lab: Lab, tmp_path: Path) -> None:
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not a model")
    decisions = performance.gate(lab.evaluate(broken), bundled_policy())
    assert all(not d.passed and "model.onnx does not parse as ONNX" in d.reason for d in decisions)
