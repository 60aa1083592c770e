"""Held-out metrics for any number of classes: scikit-learn's numbers, and no crash on a missing class."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from attestflow.onnx_runtime import classification_metrics, softmax

THREE_CLASS_NAMES = {"accuracy", "f1_macro", "f1_weighted", "roc_auc", "log_loss"}


def _logits(y: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """Noisy logits that favour the true class, as a half-decent model's would."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(y), n_classes)).astype(np.float32)
    logits[np.arange(len(y)), y] += 1.0
    return logits


def test_three_class_metrics_are_scikit_learns_macro_weighted_and_one_vs_rest_numbers() -> None:
    y = np.random.default_rng(0).integers(0, 3, 300)
    logits = _logits(y, 3, seed=1)
    pred, prob = logits.argmax(1), softmax(logits.astype(np.float64))
    got = classification_metrics(y, logits)
    assert set(got) == THREE_CLASS_NAMES, "f1 of a positive class has no meaning on three classes"
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert got["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert got["f1_weighted"] == pytest.approx(f1_score(y, pred, average="weighted"))
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, prob, multi_class="ovr", average="macro"))
    assert got["log_loss"] == pytest.approx(log_loss(y, prob))


def test_a_class_absent_from_the_held_out_rows_neither_fails_nor_shifts_the_metrics() -> None:
    y = np.random.default_rng(2).integers(0, 2, 200)  # the model has three classes; class 2 never occurs
    logits = _logits(y, 3, seed=3)
    logits[:, 2] -= 10.0  # and is never predicted
    pred, prob = logits.argmax(1), softmax(logits.astype(np.float64))
    got = classification_metrics(y, logits)
    assert all(math.isfinite(v) for v in got.values()), got
    assert got["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert got["f1_weighted"] == pytest.approx(f1_score(y, pred, average="weighted"))
    per_class = [roc_auc_score(y == k, prob[:, k]) for k in (0, 1)]
    assert got["roc_auc"] == pytest.approx(np.mean(per_class))
    assert got["log_loss"] == pytest.approx(log_loss(y, prob, labels=[0, 1, 2]))


def test_two_class_metrics_keep_their_binary_meaning_and_gain_the_multiclass_ones() -> None:
    y = np.random.default_rng(4).integers(0, 2, 200)
    logits = _logits(y, 2, seed=5)
    got = classification_metrics(y, logits)
    assert set(got) == THREE_CLASS_NAMES | {"f1"}
    assert got["f1"] == f1_score(y, logits.argmax(1), zero_division=0)
    assert got["roc_auc"] == roc_auc_score(y, softmax(logits)[:, 1])
    assert got["accuracy"] == accuracy_score(y, logits.argmax(1))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_non_finite_logit_makes_every_metric_nan(n_classes: int) -> None:
    y = np.array([0, 1, 1, 0])
    logits = np.zeros((4, n_classes), np.float32)
    logits[1, 0] = np.nan
    got = classification_metrics(y, logits)
    assert "log_loss" in got and all(math.isnan(v) for v in got.values())
