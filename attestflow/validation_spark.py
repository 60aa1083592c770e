"""The Spark engine: the expectation suite through Great Expectations' Spark datasource.

For teams whose data outgrows one machine. The data is read by Spark (CSV with a header,
inferred types, quoted fields that may span lines, as pandas reads them; or Parquet) and the
suite runs on the Spark DataFrame, except the column-type expectations: their type names are
pandas dtypes (``int64``, ``float64``), so each is judged by GX's own pandas type rule on the
dtype pandas would give the whole column (Spark's integers read as int64 without nulls and
float64 with them, as pandas reads them; doubles as float64; strings and dates as text). The
decision is then the one the pandas engine reaches on the same file.

A session already running in the process (a cluster's, or a test's) is used and left running;
otherwise one is started with ``validate_data.spark_master`` and ``spark_conf`` (UI off,
scratch space in a temporary folder) and stopped when the suite is done.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from attestflow.errors import BadInputError
from attestflow.validation import ExpectationOutcome, GxRunner, Suite, SuiteOutcome, gx_expectation

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from attestflow.config import ValidateDataConfig

TYPE_LIST = "expect_column_values_to_be_in_type_list"
INTEGERS = {"IntegerType", "LongType", "ShortType", "ByteType"}
TEXT = {"StringType", "DateType", "TimestampType", "TimestampNTZType"}


@contextmanager
def spark_session(master: str, conf: dict[str, str]) -> Iterator[SparkSession]:
    """The process's active Spark session, or a local one started (and stopped) here."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise BadInputError(
            "validate_data engine spark needs pyspark: install the 'spark' extra (make spark)"
        ) from None
    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    with tempfile.TemporaryDirectory(prefix="attestflow-spark-") as scratch:
        builder = (
            SparkSession.builder.master(master)
            .appName("attestflow-validate-data")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.local.dir", scratch)
            .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={scratch}")
        )
        for key, value in conf.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        try:
            yield session
        finally:
            session.stop()


def read_spark(spark: SparkSession, path: Path) -> Any:
    """The data file as a Spark DataFrame, parsed as pandas parses it."""
    if path.suffix == ".parquet":
        return spark.read.parquet(str(path))
    return spark.read.csv(str(path), header=True, inferSchema=True, multiLine=True, escape='"')


def _text_dtype() -> Any:
    """The dtype pandas' CSV reader gives a text column (object, or str where pandas infers strings)."""
    return pd.read_csv(io.StringIO("c\nx\n")).dtypes["c"]


def pandas_dtype(spark_type: str, has_nulls: bool) -> Any:
    """The dtype pandas gives a CSV column that Spark reads as `spark_type`; None if there is no such."""
    if spark_type in INTEGERS:
        return "float64" if has_nulls else "int64"
    if spark_type in {"DoubleType", "FloatType"}:
        return "float64"
    if spark_type == "BooleanType":
        return "object" if has_nulls else "bool"
    if spark_type in TEXT:
        return _text_dtype()
    return None


def _column_types(df: Any, suite: Suite) -> dict[str, tuple[str, bool]]:
    """Spark type name and whether it has nulls, for each column a type expectation names."""
    from pyspark.sql import functions as F

    wanted = {str(k["column"]) for t, k in suite.expectations if t == TYPE_LIST and "column" in k}
    present = [c for c in df.columns if c in wanted]
    if not present:
        return {}
    row = df.select([F.count(F.when(F.col(c).isNull(), 1)).alias(c) for c in present]).first()
    kinds = {f.name: type(f.dataType).__name__ for f in df.schema.fields}
    return {c: (kinds[c], bool(row[c])) for c in present}


def _type_outcome(kwargs: dict[str, Any], types: dict[str, tuple[str, bool]]) -> ExpectationOutcome:
    """A column-type expectation judged on the dtype pandas would give the column."""
    column = str(kwargs.get("column"))
    if column not in types:
        return ExpectationOutcome(TYPE_LIST, kwargs, False, {}, f"column {column!r} is not in the data")
    spark_type, has_nulls = types[column]
    dtype = pandas_dtype(spark_type, has_nulls)
    if dtype is None:
        reason = f"column {column!r} is Spark {spark_type}, which a CSV read by pandas never gives"
        return ExpectationOutcome(TYPE_LIST, kwargs, False, {"observed_value": spark_type}, reason)
    verdict = gx_expectation(TYPE_LIST, kwargs, "suite")._validate_pandas(
        actual_column_type=pd.Series([], dtype=dtype).dtype, expected_types_list=kwargs.get("type_list")
    )
    return ExpectationOutcome(TYPE_LIST, kwargs, bool(verdict["success"]), dict(verdict["result"]))


def validate_spark(suite: Suite, data_path: Path, cfg: ValidateDataConfig) -> SuiteOutcome:
    """Validate the file on Spark; the outcome's expectations are in suite order, engine ``spark``."""
    others = Suite(suite.name, [(t, k) for t, k in suite.expectations if t != TYPE_LIST])
    with spark_session(cfg.spark_master, cfg.spark_conf) as spark:
        df = read_spark(spark, data_path)
        types = _column_types(df, suite)
        ran = iter(GxRunner(others, "spark").run(df) if others.expectations else [])
        master = spark.sparkContext.master
    results = [_type_outcome(k, types) if t == TYPE_LIST else next(ran) for t, k in suite.expectations]
    return SuiteOutcome(suite=suite.name, engine="spark", results=results, meta={"spark_master": master})
