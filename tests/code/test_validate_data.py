"""Great Expectations validation passes good data and names what is wrong with bad data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from attestflow.config import ValidateDataConfig
from attestflow.errors import BadInputError
from tasks.validate_data import validate_data
from tests.conftest import ROOT, ExampleRepo

SUITE = ROOT / "configs/expectations/credit.yaml"


def test_clean_example_data_passes(example_repo: ExampleRepo, tmp_path: Path) -> None:
    rec = validate_data(ValidateDataConfig(suite=SUITE), example_repo.data, tmp_path)
    assert rec.success, rec.failed
    assert rec.evaluated > 10
    assert rec.result_path.is_file()


def test_corrupted_data_fails_and_names_the_expectations(example_repo: ExampleRepo, tmp_path: Path) -> None:
    df = pd.read_csv(example_repo.data)
    df.loc[0:9, "income"] = None
    df.loc[10, "default"] = 7
    df.loc[11, "age"] = -4
    bad = tmp_path / "bad.csv"
    df.to_csv(bad, index=False)
    rec = validate_data(ValidateDataConfig(suite=SUITE), bad, tmp_path)
    assert not rec.success
    assert "expect_column_values_to_not_be_null(income)" in rec.failed
    assert "expect_column_values_to_be_in_set(default)" in rec.failed
    assert "expect_column_values_to_be_between(age)" in rec.failed
    assert "expect_column_values_to_not_be_null(age)" not in rec.failed


def test_unknown_expectation_type_is_bad_input(example_repo: ExampleRepo, tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: x\nexpectations:\n  - type: expect_the_moon\n    kwargs: {}\n")
    with pytest.raises(BadInputError, match="expect_the_moon"):
        validate_data(ValidateDataConfig(suite=suite), example_repo.data, tmp_path)
