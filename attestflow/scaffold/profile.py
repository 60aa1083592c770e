"""The expectation suite `attestflow init` profiles from a table, in the format of configs/expectations/.

It pins what today's data looks like, loosely enough that the next snapshot of the same source
passes: the column set, a row count of at least about half today's, no nulls where there are
none, each column's types, numeric ranges widened by a stated margin, and the label's and the
sensitive column's values. Every bound carries a comment saying what was observed.
"""

from __future__ import annotations

import math

import pandas as pd

from attestflow.scaffold.table import TableSpec
from attestflow.scaffold.yamltext import inline

RANGE_MARGIN = 0.1
"""Observed ranges are widened by this share of the range (max - min) on each side."""
MAX_ROWS = 10_000_000
"""The row count's upper bound: generous, it catches a runaway join rather than growth."""


def _round_out(lo: float, hi: float, span: float) -> tuple[float, float]:
    """`lo` rounded down and `hi` rounded up to about four significant digits of `span`."""
    digits = max(0, 3 - math.floor(math.log10(span))) if span > 0 else 3
    scale = 10**digits
    return round(math.floor(lo * scale) / scale, digits), round(math.ceil(hi * scale) / scale, digits)


def widened_range(column: pd.Series) -> tuple[float | int, float | int, str]:
    """The observed range widened by `RANGE_MARGIN`, never below 0 for a column with no negatives; and a comment."""
    lo, hi = float(column.min()), float(column.max())
    span = hi - lo
    margin = RANGE_MARGIN * span if span > 0 else max(abs(lo) * RANGE_MARGIN, 1.0)
    low, high = lo - margin, hi + margin
    if lo >= 0:
        low = max(0.0, low)
    observed = f"observed {column.min()} to {column.max()}"
    if pd.api.types.is_integer_dtype(column):
        return math.floor(low), math.ceil(high), observed
    low, high = _round_out(low, high, span or margin)
    return low, high, observed


def _type_list(column: pd.Series) -> list[str] | None:
    """GX type names the column may hold (a float column may also come back whole, as int64); None for strings."""
    if pd.api.types.is_bool_dtype(column):
        return ["bool"]
    if pd.api.types.is_integer_dtype(column):
        return [str(column.dtype)]
    if pd.api.types.is_float_dtype(column):
        return [str(column.dtype), "int64"]
    return None  # GX does not name pandas' string dtype; strings are checked by value set or length


def _value_set(column: pd.Series) -> list[str | int | float]:
    values = column.dropna().unique().tolist()
    if pd.api.types.is_integer_dtype(column) or pd.api.types.is_bool_dtype(column):
        return sorted(values)
    if all(isinstance(v, str) for v in values):
        return sorted(values)
    return sorted(values, key=str)


def _exp(kind: str, comment: str = "", **kwargs: object) -> str:
    line = f"  - {{type: {kind}, kwargs: {inline(kwargs)}}}"
    return f"{line}  # {comment}" if comment else line


def suite_yaml(df: pd.DataFrame, spec: TableSpec, name: str, source: str) -> str:
    """The expectation suite of `df` as commented YAML."""
    rows = len(df)
    floor = max(1, rows // 2)
    lines = [
        f"# Great Expectations suite profiled by `attestflow init` from {source} ({rows} rows).",
        "# The release's validate_data stage runs it on every snapshot; a failing expectation stops",
        "# the release before training. Tighten or loosen any bound by editing it here.",
        f"# Numeric ranges: the observed range widened by {RANGE_MARGIN:.0%} of (max - min) on each side,",
        "# never below 0 for a column with no negative values.",
        f"name: {inline(name)}",
        "expectations:",
        "  - type: expect_table_columns_to_match_set",
        "    kwargs:",
        f"      column_set: {inline([str(c) for c in df.columns])}",
        "      exact_match: true",
        _exp(
            "expect_table_row_count_to_be_between",
            f"at least about half of today's {rows} rows",
            min_value=floor,
            max_value=max(MAX_ROWS, rows * 100),
        ),
    ]
    for col in df.columns:
        if not bool(df[col].isna().any()):
            lines.append(_exp("expect_column_values_to_not_be_null", column=str(col)))
    for col in df.columns:
        column = df[col]
        types = _type_list(column)
        if types is not None:
            lines.append(_exp("expect_column_values_to_be_in_type_list", column=str(col), type_list=types))
    categorical = {spec.label, *([spec.sensitive] if spec.sensitive else [])}
    for col in df.columns:
        column = df[col]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        if col in categorical or not numeric or column.dropna().empty:
            continue
        low, high, observed = widened_range(column.dropna())
        lines.append(
            _exp(
                "expect_column_values_to_be_between", observed, column=str(col), min_value=low, max_value=high
            )
        )
    if spec.text_column is not None:
        lengths = df[spec.text_column].str.len()
        lines.append(
            _exp(
                "expect_column_value_lengths_to_be_between",
                f"observed {int(lengths.min())} to {int(lengths.max())} characters",
                column=spec.text_column,
                min_value=1,
                max_value=int(lengths.max()) * 2,
            )
        )
    lines.append(
        _exp(
            "expect_column_values_to_be_in_set",
            "the label's classes",
            column=spec.label,
            value_set=list(spec.classes),
        )
    )
    if spec.sensitive is not None:
        lines.append(
            _exp(
                "expect_column_values_to_be_in_set",
                "the sensitive attribute's groups",
                column=spec.sensitive,
                value_set=_value_set(df[spec.sensitive]),
            )
        )
    return "\n".join(lines) + "\n"
