"""Stage `canary`: after promotion, the new champion and the previous one score recent data.

Both are loaded only after verification and run through ONNX Runtime, as they would serve.
The new one may not error more, disagree with the previous one more, or be slower by more
than the policy allows; with ``canary.quality`` and labelled rows (prod's recent data), it
may not be significantly worse either, judged by the regression gate's paired bootstrap (a
disagreement rate says two models differ, not which one is right). If it fails any, the
flow's transaction rolls the promotion back.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from attestflow.adapters import Inputs, ModelAdapter, load_adapter, n_rows
from attestflow.bundle import MODEL
from attestflow.config import CanaryConfig, DataConfig, ModelConfig
from attestflow.dataset import encode_labels, load_splits, read_table
from attestflow.errors import BadInputError, GateFailedError
from attestflow.evidence_check import EnvTrust
from attestflow.outcomes import CanaryRecord, PromotionRecord
from attestflow.policy import RegressionMetric, RegressionPolicy, binary_only
from attestflow.preflight import check_canary_labels
from attestflow.records import GateDecision
from attestflow.verify import verify_model_uri
from tasks.gates.regression import compare

QUALITY_RULES = RegressionPolicy(
    metrics=[
        RegressionMetric(metric="roc_auc", max_drop=0.0),
        RegressionMetric(metric="accuracy", max_drop=0.0),
    ]
)
"""Without a regression section in the policy: worse only when the whole interval is a drop."""


def _score(sess: Any, inputs: Inputs) -> tuple[np.ndarray, float]:
    """(logits, error rate) of a model on `inputs`: a failure or a non-finite score is an error."""
    from attestflow.onnx_runtime import run_batched

    try:
        logits = run_batched(sess, inputs)
    except Exception:  # an ONNX Runtime failure on the sample is the canary's error
        return np.full((n_rows(inputs), 2), np.nan), 1.0
    return logits, float(np.mean(~np.isfinite(logits).all(axis=1)))


def median_latencies_ms(sessions: list[Any], inputs: Inputs, runs: int = 21) -> list[float]:
    """Median batch latency of each session, timed in alternation so load hits all alike."""
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(runs):
        for sess, out in zip(sessions, times, strict=True):
            t0 = time.perf_counter()
            sess.run(None, inputs)
            out.append((time.perf_counter() - t0) * 1000)
    return [float(np.median(t)) for t in times]


def canary_sample(
    cfg: CanaryConfig, data: DataConfig, adapter: ModelAdapter
) -> tuple[Inputs, np.ndarray | None]:
    """The rows the canary scores (the configured sample, else the held-out split), and their labels.

    Labels come back only when ``cfg.quality`` asks for them (None otherwise).
    """
    if cfg.sample is None:
        held_out = load_splits(data, adapter)[1].head(cfg.rows)
        return held_out.inputs, held_out.y if cfg.quality else None
    df = read_table(cfg.sample)
    missing = [c for c in data.features if c not in df.columns]
    if missing:
        raise BadInputError(f"canary sample {cfg.sample} lacks column(s) {', '.join(missing)}")
    check_canary_labels(cfg, data, df.columns)
    rows = df.head(cfg.rows)
    labels = encode_labels(rows[data.label], data.classes or [], data.label) if cfg.quality else None
    return adapter.encode(rows, data), labels


def quality_findings(
    rules: RegressionPolicy | None, y: np.ndarray, new: np.ndarray, old: np.ndarray, previous_uri: str
) -> list[GateDecision]:
    """The regression gate's comparison (paired bootstrap) of the new champion with the previous one on `y`."""
    rules = rules or QUALITY_RULES
    return [
        compare(rule, rules, y, new, old, previous_uri, "canary")
        for rule in rules.metrics
        if binary_only(rule.metric, new.shape[1]) is None
    ]


def canary(
    cfg: CanaryConfig,
    promotion: PromotionRecord,
    *,
    data: DataConfig,
    tracking_uri: str,
    public_key: Path,
    model: ModelConfig | None = None,
    regression: RegressionPolicy | None = None,
    trust: EnvTrust | None = None,
) -> CanaryRecord:
    """Compare the new champion with the previous one; raise `GateFailedError` if it is worse.

    With ``cfg.quality`` the labelled rows are also scored by the regression gate's comparison
    under `regression` (the gate policy's section; unset: `QUALITY_RULES`). `trust`: both were
    promoted from another environment (`attestflow.verify.verify_model_uri`).
    """
    model_name, version, previous_version = (
        promotion.model_name,
        promotion.version,
        promotion.previous_version,
    )
    from attestflow.onnx_runtime import session

    x, y = canary_sample(cfg, data, load_adapter(model or ModelConfig()))
    sessions: dict[str, Any] = {}

    def load(label: str, v: str) -> None:
        def use(folder: Path) -> None:
            sessions[label] = session(folder / MODEL, "auto")

        result = verify_model_uri(f"models:/{model_name}/{v}", tracking_uri, public_key, use=use, trust=trust)
        if not result.ok:
            raise GateFailedError(
                [f"canary: {result.target} failed verification: {f}" for f in result.failures]
            )

    load("new", version)
    new_logits, errors = _score(sessions["new"], x)
    quality: list[GateDecision] = []
    if previous_version is None:
        disagreement, ratio = 0.0, 1.0
    else:
        load("previous", previous_version)
        old_logits, _ = _score(sessions["previous"], x)
        disagreement = float(np.mean(new_logits.argmax(1) != old_logits.argmax(1)))
        if y is not None and errors == 0.0:
            previous_uri = f"models:/{model_name}/{previous_version}"
            quality = quality_findings(regression, y, new_logits, old_logits, previous_uri)
        if errors < 1.0:
            new_ms, old_ms = median_latencies_ms([sessions["new"], sessions["previous"]], x)
            ratio = max(new_ms, cfg.latency_floor_ms) / max(old_ms, cfg.latency_floor_ms)
        else:
            ratio = float("inf")
    problems = []
    if errors > cfg.max_error_rate:
        problems.append(f"error rate {errors:.3f} > {cfg.max_error_rate:.3f}")
    if disagreement > cfg.max_disagreement:
        problems.append(
            f"disagreement with v{previous_version} {disagreement:.3f} > {cfg.max_disagreement:.3f}"
        )
    if ratio > cfg.max_latency_ratio:
        problems.append(f"latency {ratio:.2f}x the previous champion's > {cfg.max_latency_ratio:.2f}x")
    problems += [f"quality on labelled rows: {d.reason}" for d in quality if not d.passed]
    against = f"v{previous_version}" if previous_version else "no previous champion"
    reason = "; ".join(problems) or (
        f"on {n_rows(x)} rows against {against}: errors {errors:.3f}, disagreement {disagreement:.3f}, latency {ratio:.2f}x"
        + "".join(f"; quality: {d.reason}" for d in quality)
    )
    record = CanaryRecord(
        model_name,
        version,
        previous_version,
        n_rows(x),
        errors,
        disagreement,
        ratio,
        not problems,
        reason,
        quality=[d.reason for d in quality],
    )
    if problems:
        raise GateFailedError([f"canary of v{version}: {reason}"])
    return record


canary_task = task(name="canary")(canary)
