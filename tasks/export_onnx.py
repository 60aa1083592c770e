"""Stage `export_onnx`: the fine-tuned model as ONNX, the only format that is deployed.

Export uses the torch.export-based exporter (the maintained path; it needs onnxscript) at
the opset pinned in config, with a dynamic batch axis, and the result must pass the full
ONNX checker (shape inference included) before anything downstream sees it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch
from prefect import task

from attestflow.config import ExportOnnxConfig
from attestflow.digests import file_digest
from attestflow.records import OnnxExportRecord
from attestflow.tabular import load_checkpoint

INPUT_NAME = "features"
OUTPUT_NAME = "logits"


def _shapes(values: list[onnx.ValueInfoProto]) -> dict[str, list[str | int]]:
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


def _export(model: torch.nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={"x": {0: batch}},
        external_data=False,
        verbose=False,
    )


def export_onnx(cfg: ExportOnnxConfig, checkpoint: Path, out_dir: Path) -> OnnxExportRecord:
    """Export the safetensors checkpoint to ``out_dir/model.onnx`` and check it."""
    model = load_checkpoint(checkpoint).eval()
    example = torch.zeros(2, model.mean.shape[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    # The exporter warns about torchvision ops it cannot register and a torch-internal deprecation.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _export(model, example, path, cfg.opset)
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
