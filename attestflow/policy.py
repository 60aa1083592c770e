"""The gate policy: which release gates run, on which metrics, and where each one says no.

The policy is a YAML file in ``configs/`` reviewed and versioned with the code, separate
from the release config so that loosening a threshold is a visible change of its own. It is
validated strictly (``extra="forbid"``), and its SHA-256 over canonical JSON is recorded on
the model version and in every decision record, so a decision can be traced to the exact
rules that produced it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from attestflow.config import describe_validation_error
from attestflow.digests import Digest, json_digest
from attestflow.errors import ConfigError
from attestflow.yamlfile import read_yaml

GateName = Literal[
    "performance",
    "regression",
    "fairness",
    "robustness",
    "resources",
    "data",
    "format",
    "licenses",
    "attribution",
]
Direction = Literal["at_least", "at_most"]
ClassificationMetric = Literal["accuracy", "f1", "f1_macro", "f1_weighted", "roc_auc", "log_loss"]
FairnessMetric = Literal[
    "demographic_parity_difference",
    "equalized_odds_difference",
    "worst_group_accuracy",
    "accuracy_difference",
]


@dataclass(frozen=True)
class MetricFacts:
    """What a gate needs to know about a metric: which way is better, and what it is defined for."""

    higher_is_better: bool
    binary_instead: str | None = None
    """For a metric defined on two classes only: what to use on more classes."""


METRICS: dict[str, MetricFacts] = {
    "accuracy": MetricFacts(True),
    "f1": MetricFacts(True, "f1_macro or f1_weighted"),
    "f1_macro": MetricFacts(True),
    "f1_weighted": MetricFacts(True),
    "roc_auc": MetricFacts(True),
    "log_loss": MetricFacts(False),
    "demographic_parity_difference": MetricFacts(False, "worst_group_accuracy or accuracy_difference"),
    "equalized_odds_difference": MetricFacts(False, "worst_group_accuracy or accuracy_difference"),
    "worst_group_accuracy": MetricFacts(True),
    "accuracy_difference": MetricFacts(False),
}
"""Every metric a policy can name, and the facts the gates use about it (the one place they are stated)."""


LOOSER_WHEN_HIGHER: dict[str, bool] = {
    "regression.metrics.max_drop": True,
    "regression.confidence": True,
    "robustness.max_drop": True,
    "robustness.fgsm_max_drop": True,
    "robustness.fgsm_epsilon": False,
    "robustness.noise_scales": False,
    "resources.max_file_kb": True,
    "resources.max_memory_mb": True,
    "resources.latency.max_p50_ms": True,
    "resources.latency.max_p95_ms": True,
    "data.max_pii_cells": True,
    "attribution.max_sensitive_share": True,
    "attribution.proxy_threshold": True,
    "attribution.min_total": False,
    "attribution.min_rank_stability": False,
}
"""Which way each bound of a gate that is not a metric threshold gets more lenient: True when a higher value
says no less often. (A regression fails when the interval's best case is still too large a drop, so a
higher confidence, a wider interval, is more lenient.) Metric thresholds take theirs from `Threshold.direction`."""


def better_direction(metric: str) -> Direction:
    """The direction of a bound that keeps `metric` good: at least for higher-is-better, else at most."""
    return "at_least" if METRICS[metric].higher_is_better else "at_most"


def quality_drop(metric: str, before: float, after: float) -> float:
    """How much worse `after` is than `before` on `metric` (positive: worse), whichever way is better."""
    return before - after if METRICS[metric].higher_is_better else after - before


def binary_only(metric: str, n_classes: int) -> str | None:
    """Why `metric` cannot judge a model of `n_classes` classes, or None when it can."""
    instead = METRICS[metric].binary_instead
    if instead is None or n_classes == 2:
        return None
    return f"{metric} is defined for two classes only and this model has {n_classes}; use {instead}"


class _Policy(BaseModel):
    # Thresholds are finite: a bound of .inf (or NaN) is a gate that can never say no.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Threshold(_Policy):
    """A bound on one metric: the value must be at least (or at most) `threshold`."""

    metric: str
    threshold: float
    direction: Direction = "at_least"

    def margin(self, value: float) -> float:
        """Distance from the threshold on the passing side: negative fails, NaN cannot pass."""
        return value - self.threshold if self.direction == "at_least" else self.threshold - value

    def passes(self, value: float) -> bool:
        """Whether `value` is on the passing side of the threshold (NaN never is)."""
        margin = self.margin(value)
        return not math.isnan(margin) and margin >= 0


class _MetricThreshold(Threshold):
    """A bound on a named metric: the direction defaults to the metric's better side and may not oppose it."""

    @model_validator(mode="before")
    @classmethod
    def _default_direction(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "direction" not in raw and raw.get("metric") in METRICS:
            return {**raw, "direction": better_direction(raw["metric"])}
        return raw

    @model_validator(mode="after")
    def _direction_keeps_quality(self) -> _MetricThreshold:
        want = better_direction(self.metric)
        if self.direction != want:
            better = "higher" if want == "at_least" else "lower"
            raise ValueError(
                f"{self.metric} is better {better}, so its bound is direction {want}, not {self.direction}"
            )
        return self


class PerformanceThreshold(_MetricThreshold):
    """An absolute bound on a held-out classification metric."""

    metric: ClassificationMetric


class FairnessThreshold(_MetricThreshold):
    """A bound on a fairness metric over the sensitive attribute."""

    metric: FairnessMetric


class BaselinePolicy(_Policy):
    """What the candidate is compared with, and what happens when there is nothing to compare with."""

    alias: str = Field("champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    first_release: Literal["absolute_only", "require_approval"]
    """No baseline yet: pass on the absolute gates alone, or refuse until a human approves."""


class PerformancePolicy(_Policy):
    """Absolute thresholds on the candidate's held-out metrics."""

    thresholds: list[PerformanceThreshold] = Field(min_length=1)


class RegressionMetric(_Policy):
    """A metric the candidate may not lose more than `max_drop` of against the baseline."""

    metric: ClassificationMetric
    max_drop: float = Field(ge=0, le=1)


class RegressionPolicy(_Policy):
    """Candidate vs baseline on the same held-out rows, with a paired bootstrap interval."""

    metrics: list[RegressionMetric] = Field(min_length=1)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    resamples: int = Field(1000, ge=100, le=100_000)
    seed: int = 0


class FairnessPolicy(_Policy):
    """Per-group metrics over ``data.sensitive`` (fairlearn MetricFrame)."""

    thresholds: list[FairnessThreshold] = Field(min_length=1)


class RobustnessPolicy(_Policy):
    """How much the metric may drop under input noise and a gradient attack."""

    metric: ClassificationMetric = "accuracy"
    noise_scales: list[float] = Field(min_length=1)
    """Standard deviations of Gaussian noise, as fractions of each feature's standard deviation."""
    noise_repeats: int = Field(3, ge=1, le=20)
    seed: int = 0
    max_drop: float = Field(ge=0, le=1)
    fgsm_epsilon: float | None = Field(None, gt=0)
    """FGSM step as a fraction of each feature's standard deviation; unset skips the attack."""
    fgsm_max_drop: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _positive_scales(self) -> RobustnessPolicy:
        if any(s <= 0 for s in self.noise_scales):
            raise ValueError("noise_scales must all be greater than 0")
        return self


class LatencyBudget(_Policy):
    """Latency limits of ONNX Runtime inference at one batch size."""

    batch_size: int = Field(ge=1, le=1_000_000)
    max_p50_ms: float = Field(gt=0)
    max_p95_ms: float = Field(gt=0)


class ResourcesPolicy(_Policy):
    """Budgets for the ONNX file and for serving it in ONNX Runtime."""

    max_file_kb: float = Field(gt=0)
    max_memory_mb: float = Field(gt=0)
    """Growth of the process's resident memory while loading and running a fresh session."""
    latency: list[LatencyBudget] = Field(min_length=1)
    runs: int = Field(30, ge=5, le=10_000)


class DataGatePolicy(_Policy):
    """The Great Expectations result and a PII scan of the text columns."""

    pii_kinds: list[Literal["email", "phone", "card"]] = ["email", "phone", "card"]
    max_pii_cells: int = Field(0, ge=0)


class FormatPolicy(_Policy):
    """What a deployable model file must be."""

    allowed_domains: list[str] = ["", "ai.onnx"]
    """ONNX operator domains the serving runtime is trusted to run (``""`` is the default domain)."""


class LicensesPolicy(_Policy):
    """Licences the release's AI bill of materials may not contain, and the reviewed packages without one.

    `deny` holds SPDX ids or glob patterns (``AGPL-*``, ``GPL-3.0*``), matched case-insensitively
    against each licence of an SPDX expression (and against free-text licence names as written).
    ``A OR B`` is allowed when one alternative is (the user may choose it); ``A AND B`` only when
    both are; ``A WITH exception`` is judged as ``A``. A package whose licence cannot be
    determined fails unless its name is in `unknown` (a reviewed exception).
    """

    deny: list[str] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list)
    """Package names (any spelling: compared in PEP 503 normal form) reviewed as having no declared licence."""


class AttributionPolicy(_Policy):
    """What the model's attributions (`attestflow.explain`) must show."""

    max_sensitive_share: float = Field(ge=0, le=1)
    """Largest share of the total attribution the sensitive attribute and its proxies may carry."""
    proxy_threshold: float = Field(0.5, gt=0, le=1)
    """Correlation ratio (eta) with ``data.sensitive`` from which a feature counts as its proxy."""
    min_total: float = Field(gt=0)
    """Smallest total attribution (mean over rows of the summed |attribution|): below it the model ignores its input."""
    min_rank_stability: float | None = Field(None, ge=-1, le=1)
    """Smallest Spearman rank correlation of the global attributions with the champion's; unset: not compared."""


class GatePolicy(_Policy):
    """The whole policy: which gates run, in order, and each gate's rules."""

    version: int = Field(ge=1)
    run: list[GateName] = Field(min_length=1)
    baseline: BaselinePolicy
    performance: PerformancePolicy | None = None
    regression: RegressionPolicy | None = None
    fairness: FairnessPolicy | None = None
    robustness: RobustnessPolicy | None = None
    resources: ResourcesPolicy | None = None
    data: DataGatePolicy = DataGatePolicy()
    format: FormatPolicy = FormatPolicy()
    licenses: LicensesPolicy | None = None
    attribution: AttributionPolicy | None = None

    @model_validator(mode="after")
    def _listed_gates_have_rules(self) -> GatePolicy:
        missing = [g for g in self.run if getattr(self, g) is None]
        if missing:
            raise ValueError(f"gate(s) {', '.join(missing)} are listed in 'run' but have no section")
        if len(set(self.run)) != len(self.run):
            raise ValueError("a gate is listed twice in 'run'")
        return self

    def digest(self) -> Digest:
        """SHA-256 of the validated policy as canonical JSON (comments and layout do not count)."""
        return json_digest(self.model_dump(mode="json"))


def load_policy(path: Path | str) -> GatePolicy:
    """Read and validate a gate policy file; any problem is one `ConfigError` line."""
    path = Path(path)
    raw = read_yaml(path, "gate policy")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'version', 'run' and one section per gate")
    try:
        return GatePolicy.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(str(path), e)) from None
