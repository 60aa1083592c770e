"""The chunked engine: the expectation suite on a CSV read in row chunks, in bounded memory.

GX runs on each chunk; each expectation's chunk results are then combined into the verdict
the whole table would get, by the expectation's own GX rule wherever one applies:

- per-row expectations (not null, between, in set, value lengths, regex): their counts add up
  (elements, missing, unexpected), and GX's ``mostly`` rule is applied to the sums;
- header expectations (the column set, list or count): every chunk has the file's header, so
  the first chunk's verdict is the table's;
- row count, column mean, min, max and sum: partial aggregates (row count; sum and non-null
  count; min; max) are kept per chunk and combined, and the expectation's own GX bounds check
  judges the total. A mean of integers is exact; a mean of floats is the sum of per-chunk
  sums over the count, which may differ from pandas' single pass in the last bits (a mean
  within ~1e-12 relative of a bound could be judged differently; the note in ``meta`` says so);
- the column type: pandas gives a column the common type of its chunks (int64 and float64
  make float64), so chunks of one dtype keep their verdict and chunks of several are judged
  by GX's pandas type rule on the common dtype; a column that is text in some chunks and
  numbers in others fails the expectation in chunked mode, with the reason.

Everything else (distinct counts, proportions of unique values, quantiles, cross-row
expectations) needs the whole column at once: `not_combinable` names it, the ``chunked``
engine refuses the suite with that line, and ``auto`` falls back to pandas saying so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from attestflow.errors import BadInputError
from attestflow.validation import ExpectationOutcome, GxRunner, Suite, SuiteOutcome, gx_expectation

PER_ROW = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_value_lengths_to_be_between",
        "expect_column_value_lengths_to_equal",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
    }
)
HEADER = frozenset(
    {
        "expect_table_columns_to_match_set",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_column_count_to_equal",
        "expect_table_column_count_to_be_between",
        "expect_column_to_exist",
    }
)
AGGREGATE = {
    "expect_table_row_count_to_be_between": "table.row_count",
    "expect_column_mean_to_be_between": "column.mean",
    "expect_column_min_to_be_between": "column.min",
    "expect_column_max_to_be_between": "column.max",
    "expect_column_sum_to_be_between": "column.sum",
}
"""Expectations judged by GX's bounds check on a metric combined from per-chunk partials."""
TYPE_LIST = "expect_column_values_to_be_in_type_list"
PARTIAL_UNEXPECTED = 20


def not_combinable(suite: Suite) -> str | None:
    """One line naming the suite's expectations that chunks cannot combine exactly; None if all can."""
    bad = []
    for exp_type, kwargs in suite.expectations:
        if exp_type in PER_ROW or exp_type in HEADER or exp_type == TYPE_LIST:
            continue
        if exp_type in AGGREGATE and "row_condition" not in kwargs:
            continue
        bad.append(f"{exp_type}({kwargs['column']})" if "column" in kwargs else exp_type)
    if not bad:
        return None
    return f"chunks cannot combine {', '.join(bad)} exactly (it needs the whole column at once)"


@dataclass
class _Partial:
    """Per-chunk partial aggregates of one column."""

    rows: int = 0
    count: int = 0
    total: Any = 0
    minimum: Any = None
    maximum: Any = None
    floats: bool = False

    def add(self, values: pd.Series) -> None:
        present = values.dropna()
        self.rows += len(values)
        if present.empty:
            return
        self.count += len(present)
        self.floats = self.floats or pd.api.types.is_float_dtype(values)
        chunk_sum = present.sum()
        self.total += int(chunk_sum) if isinstance(chunk_sum, np.integer) else chunk_sum
        lo, hi = present.min(), present.max()
        self.minimum = lo if self.minimum is None else min(self.minimum, lo)
        self.maximum = hi if self.maximum is None else max(self.maximum, hi)

    def metric(self, name: str) -> Any:
        if name == "table.row_count":
            return self.rows
        if name == "column.mean":
            return None if self.count == 0 else self.total / self.count
        if name == "column.sum":
            return self.total
        return self.minimum if name == "column.min" else self.maximum


@dataclass
class _Combined:
    """Every chunk's outcomes and partials so far."""

    chunks: list[list[ExpectationOutcome]] = field(default_factory=list)
    dtypes: dict[str, list[str]] = field(default_factory=dict)
    partials: dict[str, _Partial] = field(default_factory=dict)
    rows: int = 0


def _chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The CSV in frames of `chunk_rows` rows (at least one frame, for a header-only file)."""
    if path.suffix == ".parquet":
        raise BadInputError(f"{path}: the chunked engine reads CSV; use engine pandas or spark for Parquet")
    try:
        seen = False
        with pd.read_csv(path, chunksize=chunk_rows) as reader:
            for chunk in reader:
                seen = True
                yield chunk
        if not seen:
            yield pd.read_csv(path, nrows=0)
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise BadInputError(f"cannot read data file {path}: {e}") from None


def _columns_of(suite: Suite) -> set[str]:
    return {str(k["column"]) for t, k in suite.expectations if t in AGGREGATE and "column" in k}


def validate_chunked(suite: Suite, data_path: Path, chunk_rows: int) -> SuiteOutcome:
    """Validate the CSV chunk by chunk; the outcome is the whole table's, engine ``chunked``."""
    refused = not_combinable(suite)
    if refused:
        raise BadInputError(f"validate_data engine chunked: {refused}; use engine pandas or spark")
    runner = GxRunner(suite, "pandas")
    columns = _columns_of(suite)
    state = _Combined()
    for chunk in _chunks(data_path, chunk_rows):
        state.chunks.append(runner.run(chunk))
        state.rows += len(chunk)
        for name, dtype in chunk.dtypes.items():
            kinds = state.dtypes.setdefault(str(name), [])
            if str(dtype) not in kinds:
                kinds.append(str(dtype))
        for col in columns & set(map(str, chunk.columns)):
            state.partials.setdefault(col, _Partial()).add(chunk[col])
    results = [_combine(i, t, k, state) for i, (t, k) in enumerate(suite.expectations)]
    meta = {"chunks": len(state.chunks), "chunk_rows": chunk_rows, "rows": state.rows}
    return SuiteOutcome(suite=suite.name, engine="chunked", results=results, meta=meta)


def _combine(i: int, exp_type: str, kwargs: dict[str, Any], state: _Combined) -> ExpectationOutcome:
    """Expectation `i`'s whole-table outcome from its per-chunk outcomes."""
    parts = [chunk[i] for chunk in state.chunks]
    first = parts[0]
    failed = next((p for p in parts if p.exception is not None), None)
    if failed is not None:
        return failed
    if exp_type in HEADER:
        return first
    if exp_type in AGGREGATE:
        return _aggregate(exp_type, kwargs, state)
    if exp_type == TYPE_LIST:
        kinds = state.dtypes.get(str(kwargs.get("column")), [])
        if len(kinds) > 1:
            return _mixed_type(exp_type, kwargs, kinds)
        if "observed_value" in first.result:
            return first
    return _counts(first, parts, kwargs)


def _counts(
    first: ExpectationOutcome, parts: list[ExpectationOutcome], kwargs: dict[str, Any]
) -> ExpectationOutcome:
    """A per-row expectation: counts summed, then GX's ``mostly`` rule on the sums."""
    from great_expectations.expectations.expectation import _mostly_success

    total = sum(int(p.result.get("element_count", 0)) for p in parts)
    missing = sum(int(p.result.get("missing_count", 0)) for p in parts)
    unexpected = sum(int(p.result.get("unexpected_count", 0)) for p in parts)
    considered = total - missing
    mostly = kwargs.get("mostly", 1.0)
    success = True if total == 0 or considered == 0 else _mostly_success(considered, unexpected, mostly)
    sample = [v for p in parts for v in p.result.get("partial_unexpected_list", [])][:PARTIAL_UNEXPECTED]
    index = [v for p in parts for v in p.result.get("partial_unexpected_index_list", [])][:PARTIAL_UNEXPECTED]
    result: dict[str, Any] = {
        "element_count": total,
        "unexpected_count": unexpected,
        "unexpected_percent": 100.0 * unexpected / considered if considered else None,
        "partial_unexpected_list": sample,
        "partial_unexpected_index_list": index,
    }
    if "missing_count" in first.result:
        result["missing_count"] = missing
    return ExpectationOutcome(first.type, first.kwargs, bool(success), result)


def _aggregate(exp_type: str, kwargs: dict[str, Any], state: _Combined) -> ExpectationOutcome:
    """A table or column aggregate: the combined metric, judged by the expectation's own GX bounds check."""
    metric = AGGREGATE[exp_type]
    if metric == "table.row_count":
        value: Any = state.rows
        note = None
    else:
        column = str(kwargs["column"])
        partial = state.partials.get(column)
        if partial is None:
            return ExpectationOutcome(exp_type, kwargs, False, {}, f"column {column!r} is not in the data")
        value = partial.metric(metric)
        value = value.item() if isinstance(value, np.generic) else value
        note = "mean of per-chunk float sums" if metric == "column.mean" and partial.floats else None
    verdict = gx_expectation(exp_type, kwargs, "suite")._validate_metric_value_between(
        metric, {metric: value}
    )
    result = dict(verdict["result"])
    if note:
        result["note"] = note
    return ExpectationOutcome(exp_type, kwargs, bool(verdict["success"]), result)


def _mixed_type(exp_type: str, kwargs: dict[str, Any], kinds: list[str]) -> ExpectationOutcome:
    """The column's dtype differs between chunks: int64 and float64 make float64 for the whole column."""
    if set(kinds) != {"int64", "float64"}:
        reason = f"column {kwargs.get('column')!r} reads as {' and '.join(kinds)} in different chunks"
        return ExpectationOutcome(exp_type, kwargs, False, {"observed_value": kinds}, reason)
    verdict = gx_expectation(exp_type, kwargs, "suite")._validate_pandas(
        actual_column_type=np.dtype("float64"), expected_types_list=kwargs.get("type_list")
    )
    return ExpectationOutcome(exp_type, kwargs, bool(verdict["success"]), dict(verdict["result"]))
