"""A tabular model trains without a base: built from the data's shape, recorded as trained from scratch.

The data is a synthetic 30-feature, 3-class table with string labels (not the example's
shape); a missing feature value is replaced inside the model, in torch and ONNX alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from safetensors import safe_open

from attestflow.adapters import load_adapter
from attestflow.bundle import PUBLIC_KEY
from attestflow.config import DataConfig, ExportOnnxConfig, FineTuneConfig, ModelConfig, ReleaseConfig
from attestflow.digests import file_digest
from attestflow.dsse import dsse_verify
from attestflow.errors import BadInputError
from attestflow.keys import load_public_key
from attestflow.lineage import CodeRevision
from attestflow.onnx_runtime import session
from attestflow.records import (
    FROM_SCRATCH,
    Invocation,
    OnnxValidationRecord,
    SnapshotRecord,
    TrainingRecord,
)
from attestflow.tabular import TabularMLP, load_checkpoint, save_checkpoint
from attestflow.workspace import Workspace
from tasks import fine_tune as ft
from tasks.export_onnx import export_onnx
from tasks.sign import sign

FEATURES = [f"f{i:02d}" for i in range(30)]
CLASSES = ["high", "low", "mid"]


def _table(rows: int = 150, seed: int = 0) -> pd.DataFrame:
    """30 numeric features; the label (low/mid/high) is a noisy function of the first two."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES)))
    score = x[:, 0] + x[:, 1] + rng.normal(scale=0.3, size=rows)
    band = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    df = pd.DataFrame(x, columns=FEATURES)
    df["y"] = np.array(["low", "mid", "high"])[band]
    return df


def _data(tmp_path: Path, df: pd.DataFrame, **kw: object) -> DataConfig:
    path = tmp_path / "table.csv"
    df.to_csv(path, index=False)
    return DataConfig.model_validate({"path": path, "label": "y", "features": FEATURES, **kw})


def _train(tmp_path: Path, data: DataConfig, **kw: object) -> TrainingRecord:
    ws = Workspace.at(tmp_path / "ws")
    ws.activate()
    cfg = FineTuneConfig.model_validate({"epochs": 1, "batch_size": 32, "device": "cpu", **kw})
    return ft.fine_tune(cfg, data, ws, "md5-of-data", ws.mlflow_uri, "tests", model=ModelConfig())


def test_a_tabular_model_without_a_base_is_built_from_the_datas_shape(tmp_path: Path) -> None:
    rec = _train(tmp_path, _data(tmp_path, _table()))
    with safe_open(str(rec.checkpoint_path), framework="pt") as f:
        meta = f.metadata()
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    assert json.loads(meta["classes"]) == CLASSES
    assert shapes["mean"] == [30] and shapes["net.0.weight"] == [32, 30] and shapes["net.4.bias"] == [3]
    assert rec.trained_from == "scratch"
    assert rec.architecture == {"arch": "TabularMLP", "n_features": 30, "hidden": [32, 16], "n_classes": 3}
    assert "architecture spec" in rec.base_checkpoint_digest.of
    assert rec.start_tags() == {
        "base_checkpoint_sha256": FROM_SCRATCH,
        "architecture_sha256": rec.base_checkpoint_digest.value,
    }
    from mlflow.tracking import MlflowClient

    params = MlflowClient(Workspace.at(tmp_path / "ws").mlflow_uri).get_run(rec.mlflow_run_id).data.params
    assert params["trained_from"] == "scratch"
    assert params["base_checkpoint_sha256"] == FROM_SCRATCH
    assert json.loads(params["architecture"])["n_classes"] == 3


def test_the_hidden_layers_option_shapes_the_model_and_its_digest() -> None:
    train = {"features": np.zeros((4, 30), np.float32)}
    default = load_adapter(ModelConfig()).from_scratch(train, 3)
    narrow = load_adapter(ModelConfig(options={"hidden": [8]})).from_scratch(train, 3)
    assert default is not None and narrow is not None
    assert isinstance(narrow.net, TabularMLP) and narrow.net.hidden == (8,)
    assert default.digest.value != narrow.digest.value


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hidden": [0]}, "model.options.hidden.0: Input should be greater than or equal to 1"),
        ({"depth": 3}, "model.options.depth: the tabular adapter takes only hidden"),
    ],
)
def test_a_bad_tabular_option_is_one_line(options: dict[str, object], message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        load_adapter(ModelConfig(options=options))


def test_labels_beyond_the_base_checkpoints_classes_are_bad_input_not_an_index_error(
    tmp_path: Path,
) -> None:
    base = tmp_path / "base.safetensors"
    save_checkpoint(TabularMLP(len(FEATURES), (8,), n_classes=2), base)
    with pytest.raises(BadInputError, match=r"base checkpoint .* has 2 classes, the data has 3"):
        _train(tmp_path, _data(tmp_path, _table()), base_checkpoint=str(base))


def _with_gaps(df: pd.DataFrame) -> pd.DataFrame:
    gappy = df.copy()
    gappy.loc[gappy.index[::5], "f00"] = np.nan
    gappy.loc[gappy.index[1::7], "f13"] = np.nan
    return gappy


def test_a_missing_value_is_replaced_by_the_training_median_in_torch_and_onnx(tmp_path: Path) -> None:
    df = _with_gaps(_table())
    data = _data(tmp_path, df, missing="median", classes=CLASSES)
    rec = _train(tmp_path, data)
    with safe_open(str(rec.checkpoint_path), framework="pt") as f:
        assert f.metadata()["missing"] == "median"
    model = load_checkpoint(rec.checkpoint_path).eval()
    assert model.fill is not None and torch.isfinite(model.fill).all()
    x = df[FEATURES].to_numpy(np.float32)
    assert np.isnan(x).any()
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.isfinite(expected).all()

    exported = export_onnx(ExportOnnxConfig(), rec.checkpoint_path, tmp_path / "onnx", data)
    proto = onnx.load(str(exported.onnx_path))
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
    assert {"IsNaN", "Where"} <= {n.op_type for n in proto.graph.node}
    got = session(exported.onnx_path, "cpu").run(None, {"features": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_a_model_trained_without_missing_values_lets_a_nan_through(tmp_path: Path) -> None:
    model = TabularMLP(3)
    model.set_normalisation(torch.randn(20, 3))
    assert model.fill is None
    assert torch.isnan(model(torch.tensor([[np.nan, 0.0, 0.0]]))).all()


def _snapshot(tmp_path: Path, data: DataConfig) -> SnapshotRecord:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({data.path.name: file_digest(data.path).value}))
    return SnapshotRecord(
        data_path=data.path,
        dvc_md5="md5-of-data",
        dvc_file=tmp_path / "table.csv.dvc",
        manifest_path=manifest,
        manifest_digest=file_digest(manifest),
        files=1,
        size_bytes=data.path.stat().st_size,
        remote=None,
        remote_url=None,
    )


def test_the_signed_provenance_of_a_model_trained_from_scratch_says_so(tmp_path: Path) -> None:
    data = _data(tmp_path, _table(), classes=CLASSES)
    rec = _train(tmp_path, data)
    exported = export_onnx(ExportOnnxConfig(), rec.checkpoint_path, tmp_path / "onnx", data)
    cfg = ReleaseConfig.model_validate(
        {
            "workspace": str(tmp_path / "ws"),
            "model_name": "scratch",
            "data": data.model_dump(mode="json"),
            "validate_data": {"suite": str(tmp_path / "suite.yaml")},
            "fine_tune": {"epochs": 1},
            "sign": {"allow_dirty": True},
        }
    )
    checked = OnnxValidationRecord("CPUExecutionProvider", 0.0, 1e-4, 10, 1.0, 1.0, {})
    ws = Workspace.at(tmp_path / "ws")
    invocation = Invocation(
        "x.yaml", [], "run-1", "2025-01-01T00:00:00+00:00", "user:t", CodeRevision("c", False)
    )
    signed = sign(
        cfg,
        _snapshot(tmp_path, data),
        rec,
        exported,
        checked,
        ws=ws,
        out_dir=tmp_path / "out",
        invocation=invocation,
    )
    envelope = json.loads(signed.provenance_path.read_text())
    stmt = dsse_verify(envelope, load_public_key(signed.bundle_dir / PUBLIC_KEY))
    build = stmt["predicate"]["buildDefinition"]
    internal = build["internalParameters"]
    assert internal["trained_from"] == "scratch"
    assert internal["architecture"] == rec.architecture
    assert internal["architecture_sha256"] == rec.base_checkpoint_digest.value
    assert internal["classes"] == CLASSES
    assert "base_checkpoint" not in {d["name"] for d in build["resolvedDependencies"]}
