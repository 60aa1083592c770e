"""What `attestflow init` reads from a table: the features, the model kind and the classes.

Every check that can refuse the table runs here, before anything is written: a missing label
or sensitive column, a label with missing values or one class, a target that looks continuous,
non-numeric features the tabular model cannot take. Each is one `BadInputError` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from attestflow.config import DataConfig
from attestflow.errors import BadInputError

TEXT_MIN_MEAN_CHARS = 20
"""A string column whose values average at least this many characters is free text, not a category."""
MAX_SENSITIVE_GROUPS = 50
"""A sensitive attribute is a few groups; more distinct values than this is refused."""
MIN_ROWS_PER_CLASS = 5
"""Fewer rows per class on average than this: the label looks like a regression target."""
TEST_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass(frozen=True)
class TableSpec:
    """What the table is for the release: columns, model kind and classes, all checked."""

    label: str
    sensitive: str | None
    features: tuple[str, ...]
    """The model's input columns (for text, the one text column)."""
    adapter: str
    """``tabular`` or ``text_classifier``."""
    classes: tuple[str | int, ...]
    """The label's values in class order (class i is ``classes[i]``)."""
    ignored: tuple[str, ...]
    """Columns that are neither label, sensitive nor features (the text model reads one column)."""
    with_missing: tuple[str, ...]
    """Feature columns that have missing values (the release then imputes the training median)."""

    @property
    def text_column(self) -> str | None:
        """The free-text column of a text model, else None."""
        return self.features[0] if self.adapter == "text_classifier" else None


def is_free_text(column: pd.Series) -> bool:
    """A column of strings that average at least `TEXT_MIN_MEAN_CHARS` characters."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return False
    values = column.dropna()
    if values.empty or not all(isinstance(v, str) for v in values):
        return False
    return bool(values.str.len().mean() >= TEXT_MIN_MEAN_CHARS)


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


def _shown(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(repr(n) for n in names)


def _require_columns(df: pd.DataFrame, label: str, sensitive: str | None, features: list[str] | None) -> None:
    if label not in df.columns:
        raise BadInputError(f"--label {label!r}: no such column; the table has {_shown(list(df.columns))}")
    if sensitive is not None and sensitive not in df.columns:
        raise BadInputError(
            f"--sensitive {sensitive!r}: no such column; the table has {_shown(list(df.columns))}"
        )
    if sensitive == label:
        raise BadInputError(
            "--sensitive names the label column; the sensitive attribute must be another column"
        )
    if features is None:
        return
    if not features:
        raise BadInputError("--features is empty; name the input columns, e.g. --features age,income")
    missing = [f for f in features if f not in df.columns]
    if missing:
        raise BadInputError(f"--features names no such column(s): {_shown(missing)}")
    reserved = [f for f in features if f in (label, sensitive)]
    if reserved:
        raise BadInputError(f"--features includes {_shown(reserved)}, the label or sensitive column")
    if len(set(features)) != len(features):
        raise BadInputError("--features names a column twice")


def _model_inputs(df: pd.DataFrame, candidates: list[str], chosen: bool) -> tuple[list[str], str, list[str]]:
    """(features, adapter, ignored columns) from the candidate columns."""
    text = [c for c in candidates if is_free_text(df[c])]
    if len(text) > 1:
        raise BadInputError(
            f"free-text columns {_shown(text)}: the text model reads one; pick it with --features"
        )
    if text:
        if chosen and len(candidates) > 1:
            raise BadInputError(
                f"--features mixes the free-text column {text[0]!r} with other columns; "
                "the text model reads only the text column"
            )
        return text, "text_classifier", [c for c in candidates if c != text[0]]
    other = [c for c in candidates if not _is_numeric(df[c])]
    if other:
        hint = "" if chosen else " or pass --features with the numeric columns to use"
        raise BadInputError(
            f"non-numeric column(s) {_shown(other)}: the tabular model takes numbers; "
            f"encode them as numbers{hint}"
        )
    if not candidates:
        raise BadInputError("the table has no feature columns besides the label and the sensitive column")
    return candidates, "tabular", []


def _classes(df: pd.DataFrame, label: str, features: list[str]) -> list[str | int]:
    """The label's classes, sorted as a release infers them; refuses one class or a continuous target."""
    from attestflow.dataset import class_values

    if pd.api.types.is_bool_dtype(df[label]):
        raise BadInputError(
            f"label column {label!r} holds booleans; store them as 0/1 or as strings such as 'yes'/'no'"
        )
    classes = class_values(df[label], DataConfig(path=Path("."), label=label, features=features))
    if len(classes) < 2:
        raise BadInputError(
            f"label column {label!r} has one class ({classes[0]!r}); a classifier needs at least two"
        )
    if len(classes) > 100 or len(classes) * MIN_ROWS_PER_CLASS > len(df):
        raise BadInputError(
            f"label column {label!r} has {len(classes)} distinct values in {len(df)} rows: it looks like "
            "a regression target, and regression is not supported yet"
        )
    return classes


def _check_split(df: pd.DataFrame, label: str, classes: list[str | int]) -> None:
    """Every class is on both sides of the release's split (else no baseline or gate can score it)."""
    from attestflow.dataset import encode_labels, test_mask

    y = encode_labels(df[label], classes, label)
    mask = test_mask(len(df), TEST_FRACTION, SPLIT_SEED)
    for side, rows in (("training", y[~mask]), ("held-out", y[mask])):
        absent = [str(c) for i, c in enumerate(classes) if i not in set(rows.tolist())]
        if absent:
            raise BadInputError(
                f"class(es) {_shown(absent)} of {label!r} have no {side} rows "
                f"(a {TEST_FRACTION:.0%} held-out split); add rows of those classes"
            )


def _check_sensitive(df: pd.DataFrame, sensitive: str) -> None:
    column = df[sensitive]
    missing = int(column.isna().sum())
    if missing:
        raise BadInputError(f"sensitive column {sensitive!r} has {missing} missing value(s)")
    groups = column.nunique()
    if groups < 2 or groups > MAX_SENSITIVE_GROUPS:
        raise BadInputError(
            f"sensitive column {sensitive!r} has {groups} group(s); the fairness gate needs "
            f"2 to {MAX_SENSITIVE_GROUPS}"
        )


def inspect_table(
    df: pd.DataFrame, label: str, *, sensitive: str | None = None, features: list[str] | None = None
) -> TableSpec:
    """The checked spec of `df` for a classifier on `label`; any problem is one `BadInputError` line."""
    if df.empty:
        raise BadInputError("the table has no rows")
    _require_columns(df, label, sensitive, features)
    candidates = features if features is not None else [c for c in df.columns if c not in (label, sensitive)]
    chosen, adapter, ignored = _model_inputs(df, [str(c) for c in candidates], features is not None)
    classes = _classes(df, label, chosen)
    _check_split(df, label, classes)
    if sensitive is not None:
        _check_sensitive(df, sensitive)
    with_missing = [c for c in chosen if bool(df[c].isna().any())]
    if adapter == "text_classifier" and with_missing:
        raise BadInputError(f"text column {chosen[0]!r} has missing values; fill or drop those rows")
    return TableSpec(
        label=label,
        sensitive=sensitive,
        features=tuple(chosen),
        adapter=adapter,
        classes=tuple(classes),
        ignored=tuple(ignored),
        with_missing=tuple(with_missing),
    )


def encoded_labels(df: pd.DataFrame, spec: TableSpec) -> np.ndarray:
    """The label column as class indices in `spec.classes` order."""
    from attestflow.dataset import encode_labels

    return encode_labels(df[spec.label], list(spec.classes), spec.label)
