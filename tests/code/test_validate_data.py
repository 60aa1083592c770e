"""Great Expectations validation passes good data and names what is wrong with bad data, on every engine."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from attestflow.config import ValidateDataConfig
from attestflow.errors import BadInputError
from tasks.generate_data import generate
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


def planted_bad_file(folder: Path) -> Path:
    """3,000 demo rows with nulls, an out-of-range age, a bad label and an integer column gone float, spread over chunks."""
    df = generate(3000, seed=3)
    df.loc[0:9, "income"] = None
    df.loc[1500, "default"] = 7
    df.loc[2999, "age"] = -4
    df.loc[2100:2200, "late_payments"] = None
    path = folder / "bad.csv"
    df.to_csv(path, index=False)
    return path


def test_chunked_validation_fails_the_same_expectations_as_pandas_on_a_planted_bad_file(
    tmp_path: Path,
) -> None:
    bad = planted_bad_file(tmp_path)
    whole = validate_data(ValidateDataConfig(suite=SUITE, engine="pandas"), bad, tmp_path / "pandas")
    chunked = validate_data(
        ValidateDataConfig(suite=SUITE, engine="chunked", chunk_rows=700), bad, tmp_path / "c"
    )
    assert (whole.engine, chunked.engine) == ("pandas", "chunked")
    assert not chunked.success and not whole.success
    assert chunked.failed == whole.failed
    assert "expect_column_values_to_be_in_type_list(late_payments)" in chunked.failed
    assert chunked.evaluated == whole.evaluated
    evidence = json.loads(chunked.result_path.read_text())
    assert evidence["meta"]["engine"] == "chunked" and evidence["meta"]["chunks"] == 5


def test_chunked_validation_passes_the_demo_data_as_pandas_does(tmp_path: Path) -> None:
    data = tmp_path / "credit.csv"
    generate(3000, seed=3).to_csv(data, index=False)
    whole = validate_data(ValidateDataConfig(suite=SUITE, engine="pandas"), data, tmp_path / "pandas")
    chunked = validate_data(
        ValidateDataConfig(suite=SUITE, engine="chunked", chunk_rows=700), data, tmp_path / "c"
    )
    assert whole.success and chunked.success, (whole.failed, chunked.failed)


def test_chunked_row_count_and_mean_are_judged_on_the_whole_table(tmp_path: Path) -> None:
    data = tmp_path / "credit.csv"
    generate(300, seed=3).to_csv(data, index=False)
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: x\nexpectations:\n"
        "  - {type: expect_table_row_count_to_be_between, kwargs: {min_value: 250}}\n"
        "  - {type: expect_column_mean_to_be_between, kwargs: {column: default, min_value: 0.9}}\n"
    )
    rec = validate_data(ValidateDataConfig(suite=suite, engine="chunked", chunk_rows=100), data, tmp_path)
    assert rec.failed == ["expect_column_mean_to_be_between(default)"]


def test_chunked_engine_refuses_an_expectation_it_cannot_combine(tmp_path: Path) -> None:
    data = tmp_path / "credit.csv"
    generate(300, seed=3).to_csv(data, index=False)
    text_suite = ROOT / "configs/expectations/text.yaml"
    with pytest.raises(BadInputError, match=r"cannot combine expect_column_proportion_of_unique_values"):
        validate_data(ValidateDataConfig(suite=text_suite, engine="chunked"), data, tmp_path)


def test_auto_engine_validates_a_large_file_in_chunks(tmp_path: Path) -> None:
    data = tmp_path / "credit.csv"
    generate(300, seed=3).to_csv(data, index=False)
    rec = validate_data(ValidateDataConfig(suite=SUITE, auto_chunked_mb=0.001), data, tmp_path)
    assert rec.engine == "chunked"
    assert validate_data(ValidateDataConfig(suite=SUITE), data, tmp_path).engine == "pandas"


def test_auto_engine_validates_the_whole_table_when_chunks_cannot_combine_the_suite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "credit.csv"
    generate(300, seed=3).to_csv(data, index=False)
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: x\nexpectations:\n"
        "  - {type: expect_column_proportion_of_unique_values_to_be_between, kwargs: {column: age, min_value: 0.9}}\n"
    )
    rec = validate_data(ValidateDataConfig(suite=suite, auto_chunked_mb=0.001), data, tmp_path)
    assert rec.engine == "pandas"
    assert rec.failed == ["expect_column_proportion_of_unique_values_to_be_between(age)"]
    assert "validating the whole table in memory" in caplog.text
