"""The exported model answers in the user's own labels: output 1 and the classes metadata, in ONNX Runtime and MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from attestflow.config import ExportOnnxConfig, ModelConfig
from attestflow.errors import BadInputError
from attestflow.onnx_check import check_onnx
from attestflow.onnx_runtime import session
from attestflow.tabular import TabularMLP, save_checkpoint
from tasks.export_onnx import export_onnx
from tests.code.planted import SPECIES, Lab


def _classes(onnx_path: Path) -> object:
    return json.loads({p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}["classes"])


def test_a_string_class_model_returns_its_labels_as_strings_in_onnx_runtime(species_lab: Lab) -> None:
    sess = session(species_lab.good_onnx, "cpu")
    assert [o.name for o in sess.get_outputs()] == ["logits", "label"]
    assert sess.get_outputs()[1].type == "tensor(string)"
    logits, labels = sess.run(None, species_lab.held_out.inputs)
    assert logits.shape == (len(species_lab.held_out), 3)
    assert labels.tolist() == [SPECIES[i] for i in logits.argmax(1)]
    truth = np.array(SPECIES)[species_lab.held_out.y]
    assert (labels == truth).mean() > 0.6, "the labels are the data's own values, not class indices"
    assert _classes(species_lab.good_onnx) == SPECIES
    onnx.checker.check_model(str(species_lab.good_onnx), full_check=True)
    assert check_onnx(species_lab.good_onnx, allowed_domains=["ai.onnx"]).ok


def test_integer_classes_come_back_as_int64_values_in_the_declared_order(
    species_lab: Lab, tmp_path: Path
) -> None:
    codes = {"cat": 3, "dog": 5, "emu": 7}
    path = tmp_path / "ints.csv"
    species_lab.table.assign(species=species_lab.table["species"].map(codes)).to_csv(path, index=False)
    data = species_lab.data.model_copy(update={"path": path})
    rec = export_onnx(ExportOnnxConfig(), species_lab.good_checkpoint, tmp_path / "ints", data)
    assert rec.outputs == {"logits": ["batch", 3], "label": ["batch"]}
    logits, labels = session(rec.onnx_path, "cpu").run(None, species_lab.held_out.inputs)
    assert labels.dtype == np.int64 and labels.tolist() == [[3, 5, 7][i] for i in logits.argmax(1)]
    assert _classes(rec.onnx_path) == [3, 5, 7]

    declared = data.model_copy(update={"classes": [7, 5, 3]})
    rec = export_onnx(ExportOnnxConfig(), species_lab.good_checkpoint, tmp_path / "declared", declared)
    logits, labels = session(rec.onnx_path, "cpu").run(None, species_lab.held_out.inputs)
    assert labels.tolist() == [[7, 5, 3][i] for i in logits.argmax(1)], "data.classes sets the order"


def test_a_model_whose_class_count_differs_from_the_data_is_not_exported(
    species_lab: Lab, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    two_classes = tmp_path / "two.safetensors"
    save_checkpoint(TabularMLP(len(species_lab.data.features), n_classes=2), two_classes)
    with pytest.raises(BadInputError, match=r"the model has 2 output classes but the data has 3"):
        export_onnx(ExportOnnxConfig(), two_classes, tmp_path / "out", species_lab.data)


def test_the_mlflow_model_signature_lists_both_outputs_and_pyfunc_predicts_the_labels(
    species_lab: Lab, tmp_path: Path
) -> None:
    import mlflow.pyfunc

    from tasks.sign import _save_mlflow_model

    bundle = tmp_path / "bundle"
    _save_mlflow_model(bundle, species_lab.good_onnx, species_lab.data, ModelConfig(), run_id="0" * 32)
    model = mlflow.pyfunc.load_model(str(bundle))
    signature = model.metadata.signature
    assert signature is not None and signature.outputs.input_names() == ["logits", "label"]
    example = model.input_example
    assert isinstance(example, dict)
    predicted = model.predict(example)
    assert list(predicted) == ["logits", "label"]
    assert predicted["label"].tolist() == [SPECIES[i] for i in predicted["logits"].argmax(1)]
    assert len(predicted["label"]) == 5
