"""Expectations on the bundled example's generated dataset itself."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.generate_data import FEATURES, generate


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return generate(4000, seed=7)


def test_generator_is_deterministic() -> None:
    pd.testing.assert_frame_equal(generate(200, seed=1), generate(200, seed=1))


def test_outcome_is_neither_rare_nor_dominant(df: pd.DataFrame) -> None:
    assert 0.2 < df["default"].mean() < 0.8


def test_sensitive_attribute_has_two_sizeable_groups(df: pd.DataFrame) -> None:
    shares = df["group"].value_counts(normalize=True)
    assert set(shares.index) == {"A", "B"}
    assert shares.min() > 0.3


def test_sensitive_attribute_is_correlated_with_income_but_not_a_feature(df: pd.DataFrame) -> None:
    means = df.groupby("group")["income"].mean()
    assert means["B"] < means["A"]
    assert "group" not in FEATURES


def test_prior_population_is_shifted(df: pd.DataFrame) -> None:
    prior = generate(4000, seed=8, drift=0.25)
    assert prior["credit_utilization"].mean() > df["credit_utilization"].mean() + 0.05
