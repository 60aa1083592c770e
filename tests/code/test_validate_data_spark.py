"""The Spark engine decides as pandas does: same failed expectations on a planted bad file, same pass on demo data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attestflow.config import ValidateDataConfig
from tasks.generate_data import generate
from tasks.validate_data import validate_data
from tests.code.test_validate_data import SUITE, planted_bad_file

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local Spark session for the module (UI off, scratch under the test's temp folder), stopped after."""
    pyspark_sql = pytest.importorskip("pyspark.sql")
    scratch = tmp_path_factory.mktemp("spark")
    session = (
        pyspark_sql.SparkSession.builder.master("local[1]")
        .appName("attestflow-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.local.dir", str(scratch))
        .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={scratch}")
        .getOrCreate()
    )
    yield session
    session.stop()


def test_spark_validation_fails_the_same_expectations_as_pandas_on_a_planted_bad_file(
    spark: Any, tmp_path: Path
) -> None:
    bad = planted_bad_file(tmp_path)
    whole = validate_data(ValidateDataConfig(suite=SUITE, engine="pandas"), bad, tmp_path / "pandas")
    on_spark = validate_data(ValidateDataConfig(suite=SUITE, engine="spark"), bad, tmp_path / "spark")
    assert on_spark.engine == "spark"
    assert not on_spark.success
    assert on_spark.failed == whole.failed
    assert on_spark.evaluated == whole.evaluated


def test_spark_validation_passes_the_demo_data_as_pandas_does(spark: Any, tmp_path: Path) -> None:
    data = tmp_path / "credit.csv"
    generate(1000, seed=3).to_csv(data, index=False)
    rec = validate_data(ValidateDataConfig(suite=SUITE, engine="spark"), data, tmp_path)
    assert rec.success, rec.failed
    assert spark.sparkContext._jsc is not None, "the engine must leave a session it did not start running"
