"""Stage `validate_onnx`: the exported model must run in ONNX Runtime and agree with torch.

The execution provider is chosen explicitly (CUDA where a GPU is present, else the CPU)
and the one that actually ran is recorded: onnxruntime-gpu lists CUDA even on machines
without a GPU and silently falls back. Held-out metrics are computed from ONNX Runtime's
outputs, because that is the model that would be deployed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from prefect import task
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from attestflow.adapters import Inputs, load_adapter, n_rows, take, torch_logits
from attestflow.config import DataConfig, ModelConfig, ValidateOnnxConfig
from attestflow.dataset import load_splits
from attestflow.errors import GateFailedError
from attestflow.records import OnnxValidationRecord

if TYPE_CHECKING:
    import onnxruntime as ort


def choose_providers(choice: str) -> list[str]:
    """ONNX Runtime providers in order of preference for `choice` (auto, cpu, cuda)."""
    import onnxruntime as ort

    cuda_ok = "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()
    if choice == "cuda" or (choice == "auto" and cuda_ok):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session(onnx_path: Path, choice: str = "auto") -> ort.InferenceSession:
    """An ONNX Runtime inference session on the chosen providers."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), opts, providers=choose_providers(choice))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def classification_metrics(y: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Accuracy, F1 and ROC AUC of binary logits."""
    pred = logits.argmax(axis=1)
    prob = softmax(logits)[:, 1]
    auc = roc_auc_score(y, prob) if len(np.unique(y)) > 1 else float("nan")
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "roc_auc": float(auc),
    }


def run_batched(sess: ort.InferenceSession, inputs: Inputs, batch: int = 1024) -> np.ndarray:
    """The session's first output for `inputs`, run `batch` rows at a time (bounded memory for large models)."""
    outs = [
        np.asarray(sess.run(None, take(inputs, slice(i, i + batch)))[0])
        for i in range(0, n_rows(inputs), batch)
    ]
    return np.concatenate(outs)


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

    one = take(test.inputs, slice(0, 1))
    sess.run(None, one)
    times = []
    for _ in range(cfg.latency_runs):
        t0 = time.perf_counter()
        sess.run(None, one)
        times.append((time.perf_counter() - t0) * 1000)
    return OnnxValidationRecord(
        provider=sess.get_providers()[0],
        max_abs_diff=max_diff,
        tolerance=cfg.tolerance,
        rows=len(rows),
        latency_ms_p50=float(np.percentile(times, 50)),
        latency_ms_p95=float(np.percentile(times, 95)),
        metrics=classification_metrics(test.y, logits),
    )


validate_onnx_task = task(name="validate_onnx")(validate_onnx)
