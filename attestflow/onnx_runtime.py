"""ONNX Runtime, run the same way wherever the exported model runs: validation, gates, registry, canary.

The execution provider is chosen explicitly (CUDA where a GPU is present, else the CPU)
and callers record the one that actually ran: onnxruntime-gpu lists CUDA even on machines
without a GPU and silently falls back. Scores are computed from ONNX Runtime's outputs,
because that is the model that would be deployed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attestflow.adapters import Inputs, n_rows, take

if TYPE_CHECKING:
    import onnxruntime as ort


def choose_providers(choice: str) -> list[str]:
    """ONNX Runtime providers in order of preference for `choice` (auto, cpu, cuda)."""
    import onnxruntime as ort
    import torch

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
    """Class probabilities from logits (rows × classes), stable for large logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def classification_metrics(y: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Accuracy, F1 and ROC AUC of binary logits; NaN for all three when a logit is not finite (no gate passes NaN)."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    if not np.isfinite(logits).all():
        return {"accuracy": float("nan"), "f1": float("nan"), "roc_auc": float("nan")}

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


@dataclass(frozen=True)
class Latency:
    """Latency percentiles of repeated runs of one input."""

    p50_ms: float
    p95_ms: float


def latency(sess: ort.InferenceSession, inputs: Inputs, runs: int) -> Latency:
    """p50 and p95 of `runs` timed runs on `inputs`, after one untimed warm-up run."""
    sess.run(None, inputs)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, inputs)
        times.append((time.perf_counter() - t0) * 1000)
    return Latency(float(np.percentile(times, 50)), float(np.percentile(times, 95)))
