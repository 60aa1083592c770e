"""The gate policy `attestflow init` writes, with thresholds set from a quick baseline model.

A threshold nobody can justify is either a gate that never says no or one that blocks every
release. So init fits a plain scikit-learn model (logistic regression on standardised features;
on TF-IDF for a text column) on the release's own training rows, scores it on the release's own
held-out rows (`attestflow.dataset.test_mask`, same fraction and seed), and sets each threshold a
stated margin short of that score: max(0.05, two standard errors on the rows it is measured on).
The written policy says the baseline value and the margin beside every threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from attestflow.errors import BadInputError
from attestflow.scaffold.table import SPLIT_SEED, TEST_FRACTION, TableSpec, encoded_labels

MIN_MARGIN = 0.05
"""The smallest margin between the baseline's score and a threshold."""

BINARY_METRICS = ("accuracy", "f1", "roc_auc")
MULTICLASS_METRICS = ("accuracy", "f1_macro", "roc_auc")


@dataclass(frozen=True)
class Baseline:
    """The baseline model's held-out scores, named as the gate policy names them."""

    model: str
    """What was fitted, in words."""
    metrics: dict[str, float]
    """Performance metrics on the held-out rows."""
    fairness: dict[str, float]
    """Fairness metrics over the sensitive attribute on the held-out rows (empty without one)."""
    held_out: int
    """Held-out rows scored."""
    smallest_group: int
    """Held-out rows of the smallest sensitive group (0 without one)."""


def _pipeline(spec: TableSpec) -> tuple[object, str]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lr = LogisticRegression(max_iter=5000)
    if spec.text_column is not None:
        return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), lr), (
            "LogisticRegression on TF-IDF word and bigram features"
        )
    steps = [SimpleImputer(strategy="median")] if spec.with_missing else []
    return make_pipeline(*steps, StandardScaler(), lr), "LogisticRegression on standardised features"


def _fairness(
    y: np.ndarray, pred: np.ndarray, groups: np.ndarray, binary: bool
) -> tuple[dict[str, float], int]:
    from fairlearn.metrics import MetricFrame, demographic_parity_difference
    from sklearn.metrics import accuracy_score

    frame = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=pred, sensitive_features=groups)
    out = {"worst_group_accuracy": float(frame.group_min())}
    if binary:
        out["demographic_parity_difference"] = float(
            demographic_parity_difference(y, pred, sensitive_features=groups)
        )
    else:
        out["accuracy_difference"] = float(frame.difference())
    return out, int(pd.Series(groups).value_counts().min())


def fit_baseline(df: pd.DataFrame, spec: TableSpec) -> Baseline:
    """Fit the baseline on the release's training rows and score it on its held-out rows."""
    from attestflow.dataset import test_mask
    from attestflow.onnx_runtime import classification_metrics

    y = encoded_labels(df, spec)
    mask = test_mask(len(df), TEST_FRACTION, SPLIT_SEED)
    x = df[spec.text_column] if spec.text_column is not None else df[list(spec.features)]
    model, described = _pipeline(spec)
    model.fit(x[~mask], y[~mask])  # type: ignore[attr-defined]
    proba = np.asarray(model.predict_proba(x[mask]))  # type: ignore[attr-defined]
    logits = np.log(np.clip(proba, 1e-12, None))
    binary = len(spec.classes) == 2
    scores = classification_metrics(y[mask], logits)
    metrics = {m: float(scores[m]) for m in (BINARY_METRICS if binary else MULTICLASS_METRICS)}
    if any(math.isnan(v) for v in metrics.values()):
        raise BadInputError(
            f"the baseline cannot be scored on the {int(mask.sum())} held-out rows: {metrics}"
        )
    fairness: dict[str, float] = {}
    smallest = 0
    if spec.sensitive is not None:
        groups = df[spec.sensitive].to_numpy()[mask]
        fairness, smallest = _fairness(y[mask], proba.argmax(axis=1), groups, binary)
    return Baseline(described, metrics, fairness, int(mask.sum()), smallest)


def margin_for(value: float, rows: int) -> float:
    """max(`MIN_MARGIN`, two standard errors of a rate `value` measured on `rows` rows).

    The rate counts one more success and one more failure (Agresti-Coull), so that a perfect
    score on a few rows, whose plain standard error is 0, still leaves room for one or two errors.
    """
    n = max(rows, 0) + 2
    p = (value * rows + 1) / n
    return max(MIN_MARGIN, 2 * math.sqrt(p * (1 - p) / n))


def _at_least(metric: str, value: float, rows: int) -> str:
    m = margin_for(value, rows)
    threshold = max(0.0, math.floor((value - m) * 100) / 100)
    return (
        f"    - {{metric: {metric}, direction: at_least, threshold: {threshold:.2f}}}"
        f"  # baseline {value:.4f} on {rows} rows; threshold = baseline - {m:.3f}, rounded down"
    )


def _at_most(metric: str, value: float, rows: int) -> str:
    # A difference between groups: its standard error, at worst, is that of a rate of 0.5 on the smallest group.
    m = max(MIN_MARGIN, 1 / math.sqrt(max(rows, 1)))
    threshold = min(1.0, math.ceil((value + m) * 100) / 100)
    return (
        f"    - {{metric: {metric}, direction: at_most, threshold: {threshold:.2f}}}"
        f"  # baseline {value:.4f} (smallest group {rows} rows); threshold = baseline + {m:.3f}, rounded up"
    )


TABULAR_TAIL = """\
robustness:
  metric: accuracy
  noise_scales: [0.1, 0.3]        # Gaussian noise, in units of each feature's standard deviation
  noise_repeats: 3
  seed: 0
  max_drop: 0.10                  # accuracy may drop at most this much under that noise
  fgsm_epsilon: 0.05              # FGSM step, in units of each feature's standard deviation
  fgsm_max_drop: 0.15

resources:
  # A from-scratch MLP (model.options.hidden) over a few dozen features is a few KB of ONNX;
  # raise these if you widen the network a lot.
  max_file_kb: 1024
  max_memory_mb: 128
  runs: 30
  latency:
    - {batch_size: 1, max_p50_ms: 5, max_p95_ms: 20}
    - {batch_size: 1024, max_p50_ms: 25, max_p95_ms: 100}
"""

TEXT_TAIL = """\
robustness:
  # Share of each text's word-piece tokens replaced by [UNK]; no FGSM (token ids have no gradient).
  metric: accuracy
  noise_scales: [0.1, 0.2]
  noise_repeats: 2
  seed: 0
  max_drop: 0.10

resources:
  # MiniLM-L6 is ~22.7M parameters: ~87 MiB of float32 ONNX.
  max_file_kb: 100000
  max_memory_mb: 1024
  runs: 10
  latency:
    - {batch_size: 1, max_p50_ms: 60, max_p95_ms: 200}
    - {batch_size: 64, max_p50_ms: 2500, max_p95_ms: 5000}
"""


LICENSES = """\
licenses:
  # From the release bundle's AI bill of materials: each library's and the base model's declared licence.
  deny: ["AGPL-*", "GPL-3.0*", "LGPL-3.0*", "SSPL-*", "BUSL-*", "CC-BY-NC-*", "Commons-Clause"]
  # Reviewed packages that declare no licence in their metadata (each wheel ships an MIT LICENSE file).
  unknown: [huey, sigstore-models, skops]
"""

ATTRIBUTION = """\
# No attribution gate yet: on real tables the sensitive column often has strong proxies (the wine example's
# region and its chemistry), and how much of the model may rest on them is a decision for people, not a
# default. To add it, list `attribution` in `run` with a section like configs/gates.yaml's:
# attribution: {max_sensitive_share: 0.2, proxy_threshold: 0.5, min_total: 0.01}
"""


def policy_yaml(baseline: Baseline, spec: TableSpec, source: str) -> str:
    """The gate policy as commented YAML, thresholds from `baseline`."""
    binary = len(spec.classes) == 2
    run = ["format", "data", "performance", "regression", *(["fairness"] if spec.sensitive else [])]
    tabular_fair = spec.sensitive is not None and spec.text_column is None
    run += ["robustness", "resources", "licenses"]
    lines = [
        f"# Gate policy written by `attestflow init` for {source}: what a candidate must show before",
        "# the `champion` alias moves. Versioned with the code; its SHA-256 is tagged on every model version.",
        f"# Thresholds come from a quick baseline, {baseline.model}, fitted on the",
        f"# release's training rows and scored on its {baseline.held_out} held-out rows (data.test_fraction",
        f"# {TEST_FRACTION}, data.split_seed {SPLIT_SEED}). Each threshold is a margin short of the baseline:",
        f"# max({MIN_MARGIN}, two standard errors on the rows it is measured on). After a few releases,",
        "# `attestflow gates calibrate` shows how much room each gate leaves.",
        "version: 1",
        "",
        "run: [" + ", ".join(run) + "]",
    ]
    if not spec.sensitive:
        lines.append(
            "# No fairness gate: init had no --sensitive column. To add one, set data.sensitive in the release"
        )
        lines.append("# config, add a `fairness` section (see configs/gates.yaml) and list it in `run`.")
    lines += [
        "",
        "baseline:",
        "  alias: champion",
        "  # No champion yet: the first release passes on the absolute gates alone.",
        "  first_release: absolute_only",
        "",
        "performance:",
        "  thresholds:",
        *(_at_least(m, v, baseline.held_out) for m, v in baseline.metrics.items()),
        "",
        "regression:",
        "  # Fails only when the paired bootstrap interval of (candidate - champion) lies wholly below -max_drop.",
        "  metrics:",
        "    - {metric: accuracy, max_drop: 0.03}",
        "    - {metric: roc_auc, max_drop: 0.03}",
        "  confidence: 0.95",
        "  resamples: 1000",
        "  seed: 0",
        "",
    ]
    if spec.sensitive:
        lines += ["fairness:", f"  # Over data.sensitive ({spec.sensitive}), per group on the held-out rows."]
        if not binary:
            lines.append(
                "  # With more than two classes parity and equalized odds do not apply; per-group accuracy does."
            )
        lines.append("  thresholds:")
        for metric, value in baseline.fairness.items():
            if metric == "worst_group_accuracy":
                lines.append(_at_least(metric, value, baseline.smallest_group))
            else:
                lines.append(_at_most(metric, value, baseline.smallest_group))
        lines.append("")
    lines.append(TEXT_TAIL if spec.text_column is not None else TABULAR_TAIL)
    if tabular_fair:
        lines.append(ATTRIBUTION)
    lines.append(LICENSES)
    lines += [
        "data:",
        "  pii_kinds: [email, phone, card]",
        "  max_pii_cells: 0",
        "",
        "format:",
        "  allowed_domains: [ai.onnx]",
    ]
    return "\n".join(lines) + "\n"
