"""Drift statistics: a shifted population is flagged, a fresh sample of the same one is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attestflow.config import DataConfig, DriftConfig
from tasks.drift import drift, psi
from tasks.generate_data import FEATURES, generate

DATA = DataConfig(path=Path("x.csv"), label="default", features=FEATURES, sensitive="group")


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shifted_one() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 5000), rng.normal(0, 1, 5000)
    assert psi(a, b, 10) < 0.02
    assert psi(a, rng.normal(1.0, 1, 5000), 10) > 0.5


def test_a_new_sample_of_the_same_population_does_not_drift(tmp_path: Path) -> None:
    generate(3000, seed=1).to_csv(ref := tmp_path / "ref.csv", index=False)
    generate(3000, seed=2).to_csv(cur := tmp_path / "cur.csv", index=False)
    report = drift(DriftConfig(), DATA, ref, cur)
    assert not report.drifted, report.reasons


def test_a_shifted_population_drifts_and_says_which_features(tmp_path: Path) -> None:
    generate(3000, seed=1).to_csv(ref := tmp_path / "ref.csv", index=False)
    generate(3000, seed=2, drift=0.4).to_csv(cur := tmp_path / "cur.csv", index=False)
    report = drift(DriftConfig(), DATA, ref, cur)
    assert report.drifted
    drifted = {f.feature for f in report.features if f.drifted}
    assert {"income", "credit_utilization"} <= drifted
    assert "age" not in drifted
