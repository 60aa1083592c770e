"""Gate `resources`: file size, latency per batch size and memory of ONNX Runtime inference."""

from __future__ import annotations

from pathlib import Path

from tasks.gates import resources
from tests.code.planted import Lab, bundled_policy, padded


def test_a_good_model_is_within_every_budget(lab: Lab) -> None:
    decisions = resources.gate(lab.evaluate(lab.good_onnx), bundled_policy())
    assert [d.metric for d in decisions] == [
        "file_size_kb",
        "latency_p50_ms_batch_1",
        "latency_p95_ms_batch_1",
        "latency_p50_ms_batch_1024",
        "latency_p95_ms_batch_1024",
        "memory_mb",
    ]
    assert all(d.passed for d in decisions), decisions
    assert 0 < decisions[1].value <= decisions[2].value


def test_a_model_padded_past_the_size_budget_is_refused(lab: Lab, tmp_path: Path) -> None:
    fat = padded(lab.good_onnx, tmp_path / "model.onnx", extra_kb=300)
    size = resources.gate(lab.evaluate(fat), bundled_policy())[0]
    assert size.metric == "file_size_kb"
    assert not size.passed and size.value > 300
    assert "above the maximum 256" in size.reason


def test_an_unloadable_model_still_has_its_size_judged(lab: Lab, tmp_path: Path) -> None:
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"\x80\x04not onnx")
    decisions = resources.gate(lab.evaluate(broken), bundled_policy())
    assert decisions[0].passed
    assert all(not d.passed and "does not parse as ONNX" in d.reason for d in decisions[1:])
