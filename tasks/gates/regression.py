"""Gate `regression`: the candidate against the current champion on the same held-out rows.

A point difference between two models on a few hundred rows is mostly noise: two equally
good models trained with different seeds differ by a percent or two. So the gate computes a
paired bootstrap confidence interval of the difference (both models scored on the same
resampled rows) and fails only when even the interval's upper bound is a drop larger than
the policy allows. With no champion yet the gate passes and the policy's explicit first-release
rule says what else it takes: the absolute gates alone, or a person's approval as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata

from attestflow.onnx_runtime import row_log_losses, softmax
from attestflow.policy import (
    GatePolicy,
    RegressionMetric,
    RegressionPolicy,
    Threshold,
    better_direction,
    binary_only,
)
from attestflow.records import GateDecision
from tasks.gates.decisions import bound, cannot_run
from tasks.gates.evaluation import Baseline, Evaluation

GATE = "regression"
_CELLS_PER_CHUNK = 4_000_000
"""Resampled rows scored at once; bounds memory at a few tens of MB for any test-set size."""


def _auc(pos: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of (resamples × rows) positive flags and scores (Mann-Whitney U, ties averaged)."""
    ranks = rankdata(score, axis=1)
    n1 = pos.sum(axis=1)
    n0 = pos.shape[1] - n1
    u = (ranks * pos).sum(axis=1) - n1 * (n1 + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n1 * n0 > 0, u / (n1 * n0), np.nan)


def _mean_defined(per_class: np.ndarray) -> np.ndarray:
    """Mean over classes (axis 0) of the values that are defined; NaN where none is."""
    defined = ~np.isnan(per_class)
    count = defined.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(defined, per_class, 0).sum(axis=0) / count, np.nan)


def _f1s(yb: np.ndarray, pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class (classes × resamples): F1 (NaN for a class neither true nor predicted) and support."""
    f1s, supports = [], []
    for k in range(n_classes):
        truth, said = yb == k, pred == k
        tp, support, denom = (
            (truth & said).sum(axis=1),
            truth.sum(axis=1),
            truth.sum(axis=1) + said.sum(axis=1),
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            f1s.append(np.where(denom > 0, 2 * tp / denom, np.nan))
        supports.append(support)
    return np.array(f1s), np.array(supports)


def resampled_metric(metric: str, y: np.ndarray, logits: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """`metric` of the model on each resample, one row of row indices in `idx` per resample."""
    yb = y[idx]
    n_classes = logits.shape[1]
    if metric == "roc_auc" and n_classes == 2:
        return _auc(yb == 1, (logits[:, 1] - logits[:, 0])[idx])
    if metric == "roc_auc":
        prob = softmax(logits)
        return _mean_defined(np.array([_auc(yb == k, prob[:, k][idx]) for k in range(n_classes)]))
    if metric == "log_loss":
        return np.asarray(row_log_losses(y, logits)[idx].mean(axis=1))
    pred = logits.argmax(axis=1)[idx]
    if metric == "accuracy":
        return np.asarray((pred == yb).mean(axis=1))
    if metric == "f1":
        tp = ((pred == 1) & (yb == 1)).sum(axis=1)
        wrong = (pred != yb).sum(axis=1)
        return np.asarray(np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0))
    f1s, support = _f1s(yb, pred, n_classes)
    if metric == "f1_macro":
        return _mean_defined(f1s)
    return np.asarray((np.nan_to_num(f1s) * support).sum(axis=0) / support.sum(axis=0))


def _resampled(n: int, score: Callable[[np.ndarray], np.ndarray], resamples: int, seed: int) -> np.ndarray:
    """`score` (a metric per row of row indices) on `resamples` bootstrap resamples of the rows, in chunks."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    values = []
    for start in range(0, resamples, per_chunk):
        values.append(score(rng.integers(0, n, size=(min(per_chunk, resamples - start), n))))
    return np.concatenate(values)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    lo, hi = np.nanquantile(values, [tail, 1 - tail])
    return float(lo), float(hi)


def paired_bootstrap(
    metric: str, y: np.ndarray, candidate: np.ndarray, baseline: np.ndarray, rules: RegressionPolicy
) -> tuple[float, float, float]:
    """The difference candidate - baseline of `metric`, and its bootstrap confidence interval."""

    def diff(idx: np.ndarray) -> np.ndarray:
        return resampled_metric(metric, y, candidate, idx) - resampled_metric(metric, y, baseline, idx)

    point = diff(np.arange(len(y))[None, :])
    lo, hi = _interval(_resampled(len(y), diff, rules.resamples, rules.seed), rules.confidence)
    return float(point[0]), lo, hi


def bootstrap_interval(
    metric: str, y: np.ndarray, logits: np.ndarray, *, confidence: float, resamples: int, seed: int
) -> tuple[float, float, float]:
    """`metric` of one model on the rows, and its percentile bootstrap confidence interval (as the gate resamples)."""

    def value(idx: np.ndarray) -> np.ndarray:
        return resampled_metric(metric, y, logits, idx)

    point = value(np.arange(len(y))[None, :])
    lo, hi = _interval(_resampled(len(y), value, resamples, seed), confidence)
    return float(point[0]), lo, hi


def first_release(base: Baseline | None) -> bool:
    """Whether there is no champion to compare with: the alias was looked up and is not set."""
    return base is not None and base.uri is None


def requires_approval(policy: GatePolicy, base: Baseline | None) -> bool:
    """Whether this is a first release that the policy sends to a person for approval."""
    return first_release(base) and policy.baseline.first_release == "require_approval"


def change_rule(rule: RegressionMetric) -> Threshold:
    """The bound on the change of `rule.metric`: a drop of at most max_drop, or for a lower-is-better metric a rise."""
    direction = better_direction(rule.metric)
    allowed = -rule.max_drop if direction == "at_least" else rule.max_drop
    return bound(f"{rule.metric}_change", allowed, direction)


def _first_release_decision(policy: GatePolicy, rule: RegressionMetric, digest: str) -> GateDecision:
    if policy.baseline.first_release == "require_approval":
        reason = "first release: no baseline; human approval required"
    else:
        alias = policy.baseline.alias
        reason = (
            f"first release: no @{alias} to compare with; policy absolute_only relies on the absolute gates"
        )
    return GateDecision(
        gate=GATE,
        metric=f"{rule.metric}_change",
        value=math.nan,
        threshold=change_rule(rule).threshold,
        margin=math.nan,
        passed=True,
        reason=reason,
        policy_digest=digest,
    )


def compare(
    rule: RegressionMetric,
    rules: RegressionPolicy,
    y: np.ndarray,
    candidate: np.ndarray,
    base_logits: np.ndarray,
    base_uri: str | None,
    digest: str,
) -> GateDecision:
    """The decision on one metric: fails only when even the interval's most favourable bound is beyond the allowed drop.

    For a higher-is-better metric that bound is the upper one and the change allowed is a drop;
    for a lower-is-better one (log loss) it is the lower bound and the change allowed is a rise.
    """
    change = change_rule(rule)
    diff, lo, hi = paired_bootstrap(rule.metric, y, candidate, base_logits, rules)
    everything = np.arange(len(y))[None, :]
    base_value = float(resampled_metric(rule.metric, y, base_logits, everything)[0])
    higher = change.direction == "at_least"
    best = hi if higher else lo
    passed = change.passes(best)
    interval = f"{diff:+.4f} ({rules.confidence:.0%} CI {lo:+.4f} to {hi:+.4f})"
    if higher:
        allowed, beyond = (
            f"drop of {rule.max_drop:g}",
            f"upper bound is a drop of more than {rule.max_drop:g}",
        )
    else:
        allowed = f"rise of {rule.max_drop:g} ({rule.metric} is better lower)"
        beyond = f"lower bound is a rise of more than {rule.max_drop:g} ({rule.metric} is better lower)"
    verdict = f"within the allowed {allowed}" if passed else f"even the {beyond}"
    return GateDecision(
        gate=GATE,
        metric=change.metric,
        value=diff,
        threshold=change.threshold,
        margin=float(change.margin(best)),
        passed=passed,
        reason=f"{rule.metric} vs {base_uri}: {interval}, {verdict}",
        policy_digest=digest,
        baseline_value=base_value,
        ci=(lo, hi),
    )


def _cannot_compare(ev: Evaluation) -> str | None:
    """Why the candidate cannot be compared with its baseline, or None when it can."""
    if ev.baseline is None:
        return "no baseline was loaded"
    if ev.baseline.logits is None:
        return f"{ev.baseline.uri} cannot be evaluated: {ev.baseline.problem}"
    if ev.logits is None:
        return ev.problem or "no model outputs"
    if ev.baseline.logits.shape[1] != ev.logits.shape[1]:
        return (
            f"{ev.baseline.uri} has {ev.baseline.logits.shape[1]} classes and the candidate "
            f"{ev.logits.shape[1]}, so they are not the same task"
        )
    return None


def gate(ev: Evaluation, policy: GatePolicy) -> list[GateDecision]:
    """One decision per configured metric: a bootstrap comparison, or the first-release rule."""
    rules = policy.regression
    if rules is None:
        return []
    digest = str(policy.digest())
    if first_release(ev.baseline):
        return [_first_release_decision(policy, rule, digest) for rule in rules.metrics]
    base, why = ev.baseline, _cannot_compare(ev)
    if why is not None or base is None or base.logits is None or ev.logits is None:
        return [cannot_run(GATE, change_rule(r), why or "no model outputs", digest) for r in rules.metrics]
    y, candidate, base_logits = ev.held_out.y, ev.logits, base.logits
    n_classes = candidate.shape[1]
    return [
        cannot_run(GATE, change_rule(r), unfit, digest)
        if (unfit := binary_only(r.metric, n_classes))
        else compare(r, rules, y, candidate, base_logits, base.uri, digest)
        for r in rules.metrics
    ]
