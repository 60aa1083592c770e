"""Stage `validate_onnx`: the exported model must run in ONNX Runtime and agree with torch.

The session runs on an explicitly chosen provider and the record names the one that actually
ran (see `attestflow.onnx_runtime`). Held-out metrics are computed from ONNX Runtime's
outputs, because that is the model that would be deployed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import task

from attestflow.adapters import load_adapter, take, torch_logits
from attestflow.config import DataConfig, ModelConfig, ValidateOnnxConfig
from attestflow.dataset import load_splits
from attestflow.errors import GateFailedError
from attestflow.onnx_runtime import classification_metrics, latency, run_batched, session
from attestflow.records import OnnxValidationRecord


def validate_onnx(
    cfg: ValidateOnnxConfig,
    data: DataConfig,
    onnx_path: Path,
    checkpoint: Path,
    model: ModelConfig | None = None,
) -> OnnxValidationRecord:
    """Compare ONNX Runtime with torch on held-out rows, time it, and score it."""
    adapter = load_adapter(model or ModelConfig())
    sess = session(onnx_path, cfg.provider)
    _, test = load_splits(data, adapter)
    logits = run_batched(sess, test.inputs)

    rows = test.head(cfg.parity_rows)
    expected = torch_logits(adapter, adapter.load(checkpoint), rows.inputs)
    max_diff = float(np.max(np.abs(expected - logits[: len(rows)])))
    if not max_diff <= cfg.tolerance:
        raise GateFailedError(
            [f"ONNX output differs from torch by {max_diff:.3g} (tolerance {cfg.tolerance:g})"]
        )

    timed = latency(sess, take(test.inputs, slice(0, 1)), cfg.latency_runs)
    return OnnxValidationRecord(
        provider=sess.get_providers()[0],
        max_abs_diff=max_diff,
        tolerance=cfg.tolerance,
        rows=len(rows),
        latency_ms_p50=timed.p50_ms,
        latency_ms_p95=timed.p95_ms,
        metrics=classification_metrics(test.y, logits),
    )


validate_onnx_task = task(name="validate_onnx")(validate_onnx)
