"""What a stage's cache key depends on, and when a cached result's files are no longer trusted."""

from __future__ import annotations

from pathlib import Path

from attestflow.caching import ContentKey, artifacts_intact
from attestflow.config import FineTuneConfig, ValidateDataConfig
from attestflow.digests import file_digest
from attestflow.records import DataValidationRecord, OnnxExportRecord


def _key(data: Path, suite: Path, out_dir: Path, md5: str = "m1", **cfg: float) -> str:
    policy = ContentKey(stage="validate_data", code_version="c1", data_md5=md5, data_path=data)
    inputs = {"cfg": ValidateDataConfig(suite=suite, **cfg), "data_path": data, "out_dir": out_dir}
    return policy.base_key(inputs)


def test_the_key_follows_content_not_run_settings(tmp_path: Path) -> None:
    data, suite = tmp_path / "data.csv", tmp_path / "suite.yaml"
    data.write_text("a\n1\n")
    suite.write_text("expectations: []\n")
    key = _key(data, suite, tmp_path / "run-1")
    assert _key(data, suite, tmp_path / "run-2", retries=5, timeout_s=10) == key
    data.write_text("a\n2\n")  # the data counts by its DVC md5, which the snapshot computed
    assert _key(data, suite, tmp_path / "run-1") == key
    assert _key(data, suite, tmp_path / "run-1", md5="m2") != key
    suite.write_text("expectations: [x]\n")  # any other input file counts by its content
    assert _key(data, suite, tmp_path / "run-1") != key


def test_the_key_names_the_stage_and_code_version(tmp_path: Path) -> None:
    inputs = {"cfg": FineTuneConfig(base_checkpoint=tmp_path / "base.safetensors")}
    a = ContentKey(stage="fine_tune", code_version="c1").base_key(inputs)
    assert a.startswith("fine_tune-")
    assert ContentKey(stage="fine_tune", code_version="c2").base_key(inputs) != a
    assert ContentKey(stage="export_onnx", code_version="c1").base_key(inputs) != a


def test_a_cached_result_is_trusted_only_while_its_files_are_intact(tmp_path: Path) -> None:
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx bytes")
    record = OnnxExportRecord(onnx, file_digest(onnx), 18, {}, {}, onnx.stat().st_size)
    assert artifacts_intact(record) is None
    onnx.write_bytes(b"other bytes")
    assert "changed" in str(artifacts_intact(record))
    onnx.unlink()
    assert "gone" in str(artifacts_intact(record))
    result = DataValidationRecord("suite", True, 3, [], tmp_path / "gx.json")
    assert "gone" in str(artifacts_intact(result))
