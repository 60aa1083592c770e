"""ONNX export is checked and dynamic in batch; ONNX Runtime must agree with torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attestflow.config import ExportOnnxConfig, FineTuneConfig, ValidateOnnxConfig
from attestflow.errors import GateFailedError
from attestflow.onnx_runtime import choose_providers, session
from attestflow.tabular import load_checkpoint, save_checkpoint
from tasks.export_onnx import export_onnx
from tasks.validate_onnx import validate_onnx
from tests.conftest import ExampleRepo


def test_export_is_checked_with_a_dynamic_batch_axis(example_repo: ExampleRepo, tmp_path: Path) -> None:
    rec = export_onnx(
        ExportOnnxConfig(opset=18), example_repo.base_checkpoint, tmp_path, example_repo.config().data
    )
    assert rec.opset == 18
    assert rec.inputs == {"features": ["batch", 7]}
    sess = session(rec.onnx_path, "cpu")
    for n in (1, 5, 64):
        out = sess.run(None, {"features": np.zeros((n, 7), np.float32)})[0]
        assert out.shape == (n, 2)


def test_onnx_runtime_matches_torch_and_is_scored(example_repo: ExampleRepo, tmp_path: Path) -> None:
    data = example_repo.config().data
    rec = export_onnx(ExportOnnxConfig(), example_repo.base_checkpoint, tmp_path, data)
    val = validate_onnx(ValidateOnnxConfig(latency_runs=3), data, rec.onnx_path, example_repo.base_checkpoint)
    assert val.max_abs_diff <= 1e-4
    assert val.provider == "CPUExecutionProvider" or torch.cuda.is_available()
    assert set(val.metrics) == {"accuracy", "f1", "f1_macro", "f1_weighted", "roc_auc", "log_loss"}
    assert val.latency_ms_p50 > 0


def test_parity_check_says_no_when_onnx_and_torch_disagree(example_repo: ExampleRepo, tmp_path: Path) -> None:
    rec = export_onnx(ExportOnnxConfig(), example_repo.base_checkpoint, tmp_path, example_repo.config().data)
    other = load_checkpoint(example_repo.base_checkpoint)
    first = other.net[0]
    assert isinstance(first, torch.nn.Linear)
    with torch.no_grad():
        first.weight.add_(0.5)
    other_path = tmp_path / "other.safetensors"
    save_checkpoint(other, other_path)
    with pytest.raises(GateFailedError, match="differs from torch"):
        validate_onnx(ValidateOnnxConfig(), example_repo.config().data, rec.onnx_path, other_path)


def test_providers_are_chosen_explicitly() -> None:
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    auto = choose_providers("auto")
    assert auto[-1] == "CPUExecutionProvider"
    assert ("CUDAExecutionProvider" in auto) == torch.cuda.is_available()
    assert FineTuneConfig.model_fields["device"].default == "auto"
