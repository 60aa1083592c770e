"""Stage `export_onnx`: the fine-tuned model as ONNX, the only format that is deployed.

Export uses the torch.export-based exporter (the maintained path; it needs onnxscript) at
the opset pinned in config, with the adapter's dynamic axes (batch, sequence), and the result must pass the full
ONNX checker (shape inference included) before anything downstream sees it.

Output 0 is the class logits, which every stage scores. Output 1 is the predicted label as the
user's own value (``Gather(classes, ArgMax(logits))``: a string tensor for string classes,
int64 for integer ones), and the classes are in the metadata as JSON, so whoever serves the
model gets the labels back without knowing the class order.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import torch
from onnx import helper, numpy_helper
from prefect import task

from attestflow.adapters import Inputs, ModelAdapter, load_adapter
from attestflow.config import DataConfig, ExportOnnxConfig, ModelConfig
from attestflow.dataset import class_values, read_table
from attestflow.digests import file_digest
from attestflow.errors import BadInputError
from attestflow.records import OnnxExportRecord

OUTPUT_NAME = "logits"
LABEL_NAME = "label"
CLASSES_KEY = "classes"
"""Metadata key of the classes in the exported model: a JSON list, class i at position i."""


def _shapes(values: list[onnx.ValueInfoProto]) -> dict[str, list[str | int]]:
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


def _example(adapter: ModelAdapter, data: DataConfig, df: pd.DataFrame) -> Inputs:
    """Two real rows of the data as the tracing example (real token ids, real feature values)."""
    if len(df) < 2:
        raise BadInputError(f"{data.path}: need at least two rows to export the model")
    return adapter.encode(df.head(2), data)


def export_classes(data: DataConfig, df: pd.DataFrame) -> list[str] | list[int]:
    """The classes as the model returns them: all integers stay int64, anything else becomes strings."""
    classes = class_values(df[data.label], data) if data.classes is None else list(data.classes)
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return [int(c) for c in classes]
    return [str(c) for c in classes]


def add_label_output(model: onnx.ModelProto, classes: list[str] | list[int]) -> None:
    """Add output 1, the predicted class value (``Gather(classes, ArgMax(logits, axis=1))``), and the classes metadata."""
    graph = model.graph
    logits = graph.output[0]
    width = logits.type.tensor_type.shape.dim[1].dim_value
    if width and width != len(classes):
        raise BadInputError(
            f"the model has {width} output classes but the data has {len(classes)}: {classes}"
        )
    values = np.array(classes, dtype=object if isinstance(classes[0], str) else np.int64)
    graph.initializer.append(numpy_helper.from_array(values, "label_classes"))
    graph.node.extend(
        [
            helper.make_node(
                "ArgMax", [logits.name], ["label_index"], name="label_argmax", axis=1, keepdims=0
            ),
            helper.make_node(
                "Gather", ["label_classes", "label_index"], [LABEL_NAME], name="label_gather", axis=0
            ),
        ]
    )
    elem = onnx.TensorProto.STRING if values.dtype == object else onnx.TensorProto.INT64
    batch = logits.type.tensor_type.shape.dim[0]
    graph.output.append(helper.make_tensor_value_info(LABEL_NAME, elem, [batch.dim_param or batch.dim_value]))
    helper.set_model_props(
        model, {**{p.key: p.value for p in model.metadata_props}, CLASSES_KEY: json.dumps(classes)}
    )


def _export(adapter: ModelAdapter, model: torch.nn.Module, example: Inputs, path: Path, opset: int) -> None:
    args = tuple(torch.from_numpy(example[n]) for n in adapter.input_names)
    # One torch.export.Dim per named axis, shared by every input that has it (batch, sequence).
    dims: dict[str, torch.export.Dim] = {}
    dynamic = [
        {
            axis: dims.setdefault(name, torch.export.Dim(name, min=1))
            for axis, name in adapter.dynamic_axes()[n].items()
        }
        for n in adapter.input_names
    ]
    torch.onnx.export(
        model,
        args,
        str(path),
        dynamo=True,
        opset_version=opset,
        input_names=list(adapter.input_names),
        output_names=[OUTPUT_NAME],
        dynamic_shapes=tuple(dynamic),
        external_data=False,
        verbose=False,
    )


def export_onnx(
    cfg: ExportOnnxConfig, checkpoint: Path, out_dir: Path, data: DataConfig, model: ModelConfig | None = None
) -> OnnxExportRecord:
    """Export the fine-tuned checkpoint to ``out_dir/model.onnx`` and check it."""
    adapter = load_adapter(model or ModelConfig())
    net = adapter.load(checkpoint).eval()
    df = read_table(data.path)
    example = _example(adapter, data, df)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    # The exporter warns about torchvision ops it cannot register and a torch-internal deprecation.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _export(adapter, net, example, path, cfg.opset)
    exported = onnx.load(str(path))
    add_label_output(exported, export_classes(data, df))
    onnx.save(exported, str(path))
    onnx.checker.check_model(str(path), full_check=True)

    proto = onnx.load(str(path))
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return OnnxExportRecord(
        onnx_path=path,
        digest=file_digest(path),
        opset=opset,
        inputs=_shapes(list(proto.graph.input)),
        outputs=_shapes(list(proto.graph.output)),
        size_bytes=path.stat().st_size,
    )


export_onnx_task = task(name="export_onnx")(export_onnx)
