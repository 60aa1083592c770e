"""Stage `gate`: the release gate, a pure function from metrics and policy to a decision.

Acting on the decision (failing the flow, not promoting) is the flow's job; keeping the
decision pure makes it testable without any model, data or service.
"""

from __future__ import annotations

import math

from prefect import task

from attestflow.config import GateConfig
from attestflow.records import GateDecision


def gate(cfg: GateConfig, metrics: dict[str, float]) -> GateDecision:
    """Pass when the configured metric is at least its minimum; a missing or NaN metric fails."""
    value = metrics.get(cfg.metric, float("nan"))
    passed = not math.isnan(value) and value >= cfg.minimum
    if cfg.metric not in metrics:
        reason = f"{cfg.metric} was not measured, so the gate cannot pass"
    elif passed:
        reason = f"{cfg.metric} {value:.4f} >= minimum {cfg.minimum:.4f}"
    else:
        reason = f"{cfg.metric} {value:.4f} is below the minimum {cfg.minimum:.4f}"
    return GateDecision(
        gate="performance",
        metric=cfg.metric,
        value=value,
        threshold=cfg.minimum,
        passed=passed,
        reason=reason,
    )


gate_task = task(name="gate")(gate)
