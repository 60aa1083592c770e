"""Stage `drift`: how far a new data snapshot is from the data the champion was trained on.

Per feature, the population stability index (over quantile bins of the reference) and the
two-sample Kolmogorov-Smirnov statistic; for the label, the total variation distance between
the class distributions. The reference is the champion's own training snapshot, fetched from
the DVC remote by the md5 its signed provenance names, so the comparison is with what the
serving model actually saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from scipy.stats import ks_2samp

from attestflow.config import DataConfig, DriftConfig
from attestflow.dataset import read_table
from attestflow.errors import BadInputError


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one column."""

    feature: str
    psi: float
    ks: float
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    """Drift of a snapshot against a reference, and the verdict."""

    reference: str
    current: str
    rows_reference: int
    rows_current: int
    features: list[FeatureDrift]
    label_shift: float
    drifted: bool
    reasons: list[str]


def psi(reference: np.ndarray, current: np.ndarray, bins: int) -> float:
    """Population stability index of `current` against `reference`, over quantile bins of the reference."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0 if np.allclose(current, reference[0]) else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    eps = 1e-6
    ref = np.histogram(reference, edges)[0] / len(reference) + eps
    cur = np.histogram(current, edges)[0] / len(current) + eps
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def label_shift(reference: pd.Series, current: pd.Series) -> float:
    """Total variation distance between two label distributions."""
    p = reference.value_counts(normalize=True)
    q = current.value_counts(normalize=True)
    classes = p.index.union(q.index)
    return float(0.5 * np.abs(p.reindex(classes, fill_value=0) - q.reindex(classes, fill_value=0)).sum())


def drift(cfg: DriftConfig, data: DataConfig, reference: Path, current: Path) -> DriftReport:
    """Compare `current` with `reference` column by column."""
    ref, cur = read_table(reference), read_table(current)
    missing = [c for c in data.features if c not in cur.columns or c not in ref.columns]
    if missing:
        raise BadInputError(f"drift: column(s) {', '.join(missing)} missing from the snapshots")
    features = []
    for name in data.features:
        r = ref[name].to_numpy(dtype=float)
        c = cur[name].to_numpy(dtype=float)
        p, k = psi(r, c, cfg.bins), float(ks_2samp(r, c).statistic)
        features.append(FeatureDrift(name, p, k, p > cfg.psi_threshold or k > cfg.ks_threshold))
    shift = label_shift(ref[data.label], cur[data.label]) if data.label in cur.columns else 0.0
    reasons = [f"{f.feature}: PSI {f.psi:.3f}, KS {f.ks:.3f}" for f in features if f.drifted]
    if shift > cfg.label_shift_threshold:
        reasons.append(f"label distribution moved by {shift:.3f} (total variation)")
    return DriftReport(
        reference=str(reference),
        current=str(current),
        rows_reference=len(ref),
        rows_current=len(cur),
        features=features,
        label_shift=shift,
        drifted=bool(reasons),
        reasons=reasons,
    )


drift_task = task(name="drift")(drift)
