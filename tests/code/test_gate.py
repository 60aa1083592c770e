"""The release gate is a pure function; it says no whenever it cannot say yes."""

from __future__ import annotations

import math

from attestflow.config import GateConfig
from tasks.gate import gate


def test_gate_passes_at_or_above_the_minimum() -> None:
    decision = gate(GateConfig(metric="accuracy", minimum=0.8), {"accuracy": 0.8})
    assert decision.passed
    assert "0.8000 >= minimum" in decision.reason


def test_gate_says_no_below_the_minimum() -> None:
    decision = gate(GateConfig(metric="accuracy", minimum=0.8), {"accuracy": 0.79})
    assert not decision.passed
    assert "below the minimum" in decision.reason


def test_gate_says_no_when_the_metric_is_missing_or_nan() -> None:
    missing = gate(GateConfig(metric="f1", minimum=0.1), {"accuracy": 0.99})
    assert not missing.passed and "not measured" in missing.reason
    nan = gate(GateConfig(metric="roc_auc", minimum=0.1), {"roc_auc": math.nan})
    assert not nan.passed
