"""Calibration of the gates: how close each gate came to saying no over the last releases.

A gate that has passed every release with a wide margin tests nothing. The margins each
release logged to MLflow (``gate_margin/<gate>/<metric>`` on the training run of every model
version) are read back and summarised per gate, so such a gate is visible and its threshold
can be tightened with evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from attestflow.tracking import client
from tasks.gates.report import MARGIN_PREFIX


@dataclass(frozen=True)
class MarginSummary:
    """One gate metric's margins over a set of releases."""

    gate: str
    metric: str
    releases: int
    failed: int
    """Releases where the margin was negative or could not be measured."""
    min: float
    median: float
    max: float

    @property
    def never_failed(self) -> bool:
        """Whether every release passed this gate."""
        return self.failed == 0


def release_margins(tracking_uri: str, model_name: str, last: int) -> dict[str, list[float]]:
    """Metric name -> margins of the last `last` model versions of `model_name`, newest first."""
    c = client(tracking_uri)
    versions = sorted(
        c.search_model_versions(f"name='{model_name}'"), key=lambda v: int(v.version), reverse=True
    )[:last]
    margins: dict[str, list[float]] = {}
    for version in versions:
        if not version.run_id:
            continue
        for key, value in c.get_run(version.run_id).data.metrics.items():
            if key.startswith(MARGIN_PREFIX):
                margins.setdefault(key.removeprefix(MARGIN_PREFIX), []).append(float(value))
    return margins


def summarise(name: str, values: list[float]) -> MarginSummary:
    """The summary of one gate metric's margins (NaN counts as a failure, not a number)."""
    gate, _, metric = name.partition("/")
    finite = [v for v in values if not math.isnan(v)]
    failed = sum(1 for v in values if math.isnan(v) or v < 0)
    stats = (min(finite), float(np.median(finite)), max(finite)) if finite else (math.nan,) * 3
    return MarginSummary(gate, metric, len(values), failed, *stats)


def calibrate(tracking_uri: str, model_name: str, last: int = 20) -> list[MarginSummary]:
    """Per gate metric, the margins of the last `last` releases of `model_name`."""
    margins = release_margins(tracking_uri, model_name, last)
    return [summarise(name, values) for name, values in sorted(margins.items())]
