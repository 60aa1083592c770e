"""Calibration of the gates: how close each gate came to saying no over the last releases.

A gate that has passed every release with a wide margin tests nothing. The margins each
release logged to MLflow (``gate_margin/``, ``gate_passed/`` and ``gate_threshold/`` metrics
on the training run of every model version) are read back and summarised per gate metric,
with the smallest margin as a fraction of the threshold (its headroom), so such a gate is
visible and its threshold can be tightened with evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from attestflow.registry import Registry
from tasks.gates.report import MARGIN_PREFIX, PASSED_PREFIX, THRESHOLD_PREFIX

LOOSE_HEADROOM = 0.5
"""A gate whose smallest margin is at least this fraction of its threshold never came close."""


@dataclass(frozen=True)
class Outcome:
    """One release's decision on one gate metric."""

    margin: float
    passed: bool
    threshold: float


@dataclass(frozen=True)
class MarginSummary:
    """One gate metric's margins over a set of releases."""

    gate: str
    metric: str
    releases: int
    failed: int
    min: float
    """Smallest margin measured (NaN when none was, as on first releases of the regression gate)."""
    median: float
    max: float
    headroom: float
    """Smallest margin as a fraction of the latest threshold; NaN for a threshold of zero."""

    @property
    def never_failed(self) -> bool:
        """Whether every release passed this gate."""
        return self.failed == 0

    @property
    def loose(self) -> bool:
        """Never failed and never came within `LOOSE_HEADROOM` of its threshold."""
        return self.never_failed and not math.isnan(self.headroom) and self.headroom >= LOOSE_HEADROOM


def release_outcomes(tracking_uri: str, model_name: str, last: int) -> dict[str, list[Outcome]]:
    """``gate/metric`` -> outcomes of the last `last` model versions of `model_name`, newest first."""
    registry = Registry(tracking_uri)
    versions = registry.find_versions(model_name)[::-1][:last]
    outcomes: dict[str, list[Outcome]] = {}
    for version in versions:
        run = registry.run(version.run_id) if version.run_id else None
        if run is None:
            continue
        metrics = run.metrics
        for key, margin in metrics.items():
            if not key.startswith(MARGIN_PREFIX):
                continue
            name = key.removeprefix(MARGIN_PREFIX)
            passed = metrics.get(PASSED_PREFIX + name, float(margin >= 0))
            threshold = metrics.get(THRESHOLD_PREFIX + name, math.nan)
            outcomes.setdefault(name, []).append(Outcome(float(margin), passed == 1.0, float(threshold)))
    return outcomes


def summarise(name: str, outcomes: list[Outcome]) -> MarginSummary:
    """The summary of one gate metric's outcomes, newest first."""
    gate, _, metric = name.partition("/")
    finite = [o.margin for o in outcomes if not math.isnan(o.margin)]
    low, mid, high = (min(finite), float(np.median(finite)), max(finite)) if finite else (math.nan,) * 3
    threshold = outcomes[0].threshold
    headroom = low / abs(threshold) if finite and threshold and not math.isnan(threshold) else math.nan
    failed = sum(1 for o in outcomes if not o.passed)
    return MarginSummary(gate, metric, len(outcomes), failed, low, mid, high, headroom)


def calibrate(tracking_uri: str, model_name: str, last: int = 20) -> list[MarginSummary]:
    """Per gate metric, the margins of the last `last` releases of `model_name`."""
    outcomes = release_outcomes(tracking_uri, model_name, last)
    return [summarise(name, found) for name, found in sorted(outcomes.items())]
