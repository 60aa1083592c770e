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

import numpy as np
from scipy.stats import rankdata

from attestflow.policy import GatePolicy, RegressionMetric, RegressionPolicy
from attestflow.records import GateDecision
from tasks.gates.decisions import bound, cannot_run
from tasks.gates.evaluation import Baseline, Evaluation

GATE = "regression"
_CELLS_PER_CHUNK = 4_000_000
"""Resampled rows scored at once; bounds memory at a few tens of MB for any test-set size."""


def _auc(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of (resamples × rows) labels and scores (Mann-Whitney U, ties averaged)."""
    ranks = rankdata(score, axis=1)
    pos = y == 1
    n1 = pos.sum(axis=1)
    n0 = y.shape[1] - n1
    u = (ranks * pos).sum(axis=1) - n1 * (n1 + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n1 * n0 > 0, u / (n1 * n0), np.nan)


def resampled_metric(metric: str, y: np.ndarray, logits: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """`metric` of the model on each resample, one row of row indices in `idx` per resample."""
    yb = y[idx]
    if metric == "roc_auc":
        return _auc(yb, (logits[:, 1] - logits[:, 0])[idx])
    pred = logits.argmax(axis=1)[idx]
    if metric == "accuracy":
        return np.asarray((pred == yb).mean(axis=1))
    tp = ((pred == 1) & (yb == 1)).sum(axis=1)
    wrong = (pred != yb).sum(axis=1)
    return np.asarray(np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0))


def paired_bootstrap(
    metric: str, y: np.ndarray, candidate: np.ndarray, baseline: np.ndarray, rules: RegressionPolicy
) -> tuple[float, float, float]:
    """The difference candidate - baseline of `metric`, and its bootstrap confidence interval."""
    n = len(y)
    everything = np.arange(n)[None, :]
    diff = resampled_metric(metric, y, candidate, everything) - resampled_metric(
        metric, y, baseline, everything
    )
    rng = np.random.default_rng(rules.seed)
    per_chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    diffs = []
    for start in range(0, rules.resamples, per_chunk):
        idx = rng.integers(0, n, size=(min(per_chunk, rules.resamples - start), n))
        diffs.append(resampled_metric(metric, y, candidate, idx) - resampled_metric(metric, y, baseline, idx))
    tail = (1 - rules.confidence) / 2
    lo, hi = np.nanquantile(np.concatenate(diffs), [tail, 1 - tail])
    return float(diff[0]), float(lo), float(hi)


def first_release(base: Baseline | None) -> bool:
    """Whether there is no champion to compare with: the alias was looked up and is not set."""
    return base is not None and base.uri is None


def requires_approval(policy: GatePolicy, base: Baseline | None) -> bool:
    """Whether this is a first release that the policy sends to a person for approval."""
    return first_release(base) and policy.baseline.first_release == "require_approval"


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
        threshold=-rule.max_drop,
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
    """The decision on one metric: fails only when the interval's upper bound is beyond the allowed drop."""
    diff, lo, hi = paired_bootstrap(rule.metric, y, candidate, base_logits, rules)
    everything = np.arange(len(y))[None, :]
    base_value = float(resampled_metric(rule.metric, y, base_logits, everything)[0])
    margin = hi + rule.max_drop
    passed = not math.isnan(margin) and margin >= 0
    interval = f"{diff:+.4f} ({rules.confidence:.0%} CI {lo:+.4f} to {hi:+.4f})"
    verdict = (
        f"within the allowed drop of {rule.max_drop:g}"
        if passed
        else f"even the upper bound is a drop of more than {rule.max_drop:g}"
    )
    return GateDecision(
        gate=GATE,
        metric=f"{rule.metric}_change",
        value=diff,
        threshold=-rule.max_drop,
        margin=float(margin),
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
        change = [bound(f"{r.metric}_change", -r.max_drop, "at_least") for r in rules.metrics]
        return [cannot_run(GATE, rule, why or "no model outputs", digest) for rule in change]
    y, candidate, base_logits = ev.held_out.y, ev.logits, base.logits
    return [compare(r, rules, y, candidate, base_logits, base.uri, digest) for r in rules.metrics]
