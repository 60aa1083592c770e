"""Building decision records the same way in every gate.

Every gate turns a measured value and a threshold into a `GateDecision` with a margin and
a one-sentence reason; sharing that here keeps the wording and the NaN rule (a value that
could not be measured never passes) identical across gates.
"""

from __future__ import annotations

import math

from attestflow.policy import Direction, Threshold
from attestflow.records import GateDecision

_PASS_WORDS = {"at_least": "is at least", "at_most": "is at most"}
_FAIL_WORDS = {"at_least": "is below the minimum", "at_most": "is above the maximum"}


def bound(metric: str, threshold: float, direction: Direction) -> Threshold:
    """A threshold built from a policy setting that is not itself a `Threshold` (a budget, a drop)."""
    return Threshold(metric=metric, threshold=threshold, direction=direction)


def sentence(rule: Threshold, value: float) -> str:
    """Why `value` passes or fails `rule`, in words."""
    if math.isnan(value):
        return f"{rule.metric} could not be measured, so the gate cannot pass"
    words = _PASS_WORDS if rule.passes(value) else _FAIL_WORDS
    return f"{rule.metric} {value:.4g} {words[rule.direction]} {rule.threshold:.4g}"


def judge(gate: str, rule: Threshold, value: float, policy_digest: str, *, note: str = "") -> GateDecision:
    """The decision of `gate` on `value` against `rule`; `note` is appended to the reason."""
    value = float(value)
    reason = sentence(rule, value) + (f" ({note})" if note else "")
    return GateDecision(
        gate=gate,
        metric=rule.metric,
        value=value,
        threshold=rule.threshold,
        margin=float(rule.margin(value)),
        passed=rule.passes(value),
        reason=reason,
        policy_digest=policy_digest,
    )


def cannot_run(gate: str, rule: Threshold, why: str, policy_digest: str) -> GateDecision:
    """A failing decision for a gate that could not measure `rule.metric`, saying why."""
    return GateDecision(
        gate=gate,
        metric=rule.metric,
        value=math.nan,
        threshold=rule.threshold,
        margin=math.nan,
        passed=False,
        reason=f"{rule.metric} cannot be checked: {why}",
        policy_digest=policy_digest,
    )
