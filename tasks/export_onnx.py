"""Stage `export_onnx`: the fine-tuned model as ONNX, the only format that is deployed.

Export uses the torch.export-based exporter (the maintained path; it needs onnxscript) at
the opset pinned in config, with the adapter's dynamic axes (batch, sequence), and the result must pass the full
ONNX checker (shape inference included) before anything downstream sees it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch
from prefect import task

from attestflow.adapters import Inputs, ModelAdapter, load_adapter
from attestflow.config import DataConfig, ExportOnnxConfig, ModelConfig
from attestflow.dataset import read_table
from attestflow.digests import file_digest
from attestflow.errors import BadInputError
from attestflow.records import OnnxExportRecord

OUTPUT_NAME = "logits"


def _shapes(values: list[onnx.ValueInfoProto]) -> dict[str, list[str | int]]:
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


def _example(adapter: ModelAdapter, data: DataConfig) -> Inputs:
    """Two real rows of the data as the tracing example (real token ids, real feature values)."""
    df = read_table(data.path)
    if len(df) < 2:
        raise BadInputError(f"{data.path}: need at least two rows to export the model")
    return adapter.encode(df.head(2), data)


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
    example = _example(adapter, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    # The exporter warns about torchvision ops it cannot register and a torch-internal deprecation.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _export(adapter, net, example, path, cfg.opset)
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
