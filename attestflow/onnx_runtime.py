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
from typing import TYPE_CHECKING, get_args

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


def metric_names(n_classes: int) -> list[str]:
    """The names `classification_metrics` returns for a model of `n_classes` classes (`f1` only for two)."""
    from attestflow.policy import ClassificationMetric, binary_only

    return [m for m in get_args(ClassificationMetric) if binary_only(m, n_classes) is None]


def row_log_losses(y: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Each row's log loss (-log of the true class's probability), clipped as scikit-learn clips it."""
    prob = softmax(logits.astype(np.float64))[np.arange(len(y)), y]
    eps = np.finfo(np.float64).eps
    return np.asarray(-np.log(np.clip(prob, eps, 1 - eps)))


def one_vs_rest_auc(y: np.ndarray, prob: np.ndarray) -> float:
    """Macro average of each class's ROC AUC against the rest; classes absent from `y` (or all of it) are left out."""
    from sklearn.metrics import roc_auc_score

    aucs = [roc_auc_score(y == k, prob[:, k]) for k in range(prob.shape[1]) if 0 < (y == k).sum() < len(y)]
    return float(np.mean(aucs)) if aucs else float("nan")


def classification_metrics(y: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """The held-out metrics of class logits (any number of classes); NaN for all when a logit is not finite.

    Classes are the logits' columns (0 to K-1), so a class missing from `y` neither fails nor
    shifts a metric: macro F1 and one-vs-rest AUC average over the classes they are defined for.
    """
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    n_classes = logits.shape[1]
    names = metric_names(n_classes)
    if not np.isfinite(logits).all():
        return dict.fromkeys(names, float("nan"))

    pred = logits.argmax(axis=1)
    prob = softmax(logits)
    labels = list(range(n_classes))
    out = {"accuracy": float(accuracy_score(y, pred))}
    if "f1" in names:
        out["f1"] = float(f1_score(y, pred, zero_division=0))
    for average in ("macro", "weighted"):
        f1 = f1_score(y, pred, labels=labels, average=average, zero_division=np.nan)
        out[f"f1_{average}"] = float(f1)
    if n_classes == 2:
        out["roc_auc"] = float(roc_auc_score(y, prob[:, 1]) if len(np.unique(y)) > 1 else float("nan"))
    else:
        out["roc_auc"] = one_vs_rest_auc(y, prob)
    out["log_loss"] = float(row_log_losses(y, logits).mean())
    return out


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
