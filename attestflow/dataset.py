"""Reading the tabular dataset and splitting it the same way in every stage.

The split is a pure function of the row's position and a seed, so training, ONNX validation
and the gates all see the same held-out rows without passing data between stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from attestflow.adapters import Inputs, ModelAdapter, take
from attestflow.config import DataConfig
from attestflow.errors import BadInputError


@dataclass(frozen=True)
class Split:
    """One side of the split: the model's inputs (as the adapter encodes them), labels, groups."""

    inputs: Inputs
    y: np.ndarray
    sensitive: np.ndarray | None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def x(self) -> np.ndarray:
        """The single input of a one-input model (the tabular features); multi-input models have none."""
        if len(self.inputs) != 1:
            raise BadInputError(f"this model takes {len(self.inputs)} inputs, not one feature array")
        return next(iter(self.inputs.values()))

    def head(self, n: int) -> Split:
        """The first `n` rows."""
        sens = None if self.sensitive is None else self.sensitive[:n]
        return Split(take(self.inputs, slice(0, n)), self.y[:n], sens)


def require_data_file(path: Path) -> None:
    """`path` is one file, as the stages read it (a CSV or Parquet table); a folder or nothing is bad input."""
    if path.is_dir():
        raise BadInputError(f"data.path {path} is a directory; the release reads one CSV or Parquet file")
    if not path.is_file():
        raise BadInputError(f"data file not found: {path}")


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet table; a missing or unreadable file is bad input."""
    require_data_file(path)
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise BadInputError(f"cannot read data file {path}: {e}") from None


def test_mask(n_rows: int, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out rows, fixed by the seed."""
    rng = np.random.default_rng(seed)
    return rng.random(n_rows) < test_fraction


def _label_values(labels: pd.Series, name: str) -> pd.Series:
    """The label column with whole-number floats as integers; a missing label is bad input."""
    missing = int(labels.isna().sum())
    if missing:
        raise BadInputError(f"label column {name!r} has {missing} missing value(s)")
    if pd.api.types.is_float_dtype(labels) and bool((labels == labels.round()).all()):
        return labels.astype(np.int64)
    return labels


def class_values(labels: pd.Series, cfg: DataConfig) -> list[str | int]:
    """The classes in order: ``data.classes``, else the label's distinct values sorted (integers as integers)."""
    if cfg.classes is not None:
        return list(cfg.classes)
    values = _label_values(labels, cfg.label).unique()
    if pd.api.types.is_integer_dtype(labels) or all(isinstance(v, int | np.integer) for v in values):
        return sorted(int(v) for v in values)
    return sorted(str(v) for v in values)


def classifier_classes(labels: pd.Series, cfg: DataConfig) -> list[str | int]:
    """`class_values`, refused as bad input when the data holds fewer than two of them, whatever
    ``data.classes`` lists: a classifier needs two."""
    present = class_values(labels, cfg.model_copy(update={"classes": None}))
    if not present:
        raise BadInputError(f"label column {cfg.label!r} has no values: the table has no rows")
    if len(present) < 2:
        raise BadInputError(
            f"label column {cfg.label!r} has one class ({present[0]}): a classifier needs two"
        )
    return class_values(labels, cfg)


def encode_labels(labels: pd.Series, classes: list[str | int], name: str) -> np.ndarray:
    """Class indices (int64) of `labels`; a value that is not one of `classes` is bad input."""
    values = _label_values(labels, name)
    index = {str(c): i for i, c in enumerate(classes)}
    keys = values.astype(str)
    unknown = sorted(set(keys.unique()) - index.keys())
    if unknown:
        shown = ", ".join(repr(v) for v in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise BadInputError(
            f"label column {name!r} holds {shown}, not among data.classes {[str(c) for c in classes]}"
        )
    return keys.map(index).to_numpy(dtype=np.int64, copy=True)  # writable: torch.from_numpy warns on a view


def split_table(df: pd.DataFrame, cfg: DataConfig, adapter: ModelAdapter) -> tuple[Split, Split]:
    """Train and held-out splits of `df`, encoded by `adapter`; labels become class indices."""
    if cfg.label not in df.columns:
        raise BadInputError(f"data is missing the label column {cfg.label!r}")
    classes = class_values(df[cfg.label], cfg)
    mask = test_mask(len(df), cfg.test_fraction, cfg.split_seed)

    def side(rows: pd.DataFrame) -> Split:
        sens = rows[cfg.sensitive].to_numpy() if cfg.sensitive in rows.columns else None
        y = encode_labels(rows[cfg.label], classes, cfg.label)
        return Split(inputs=adapter.encode(rows, cfg), y=y, sensitive=sens)

    return side(df[~mask]), side(df[mask])


def load_splits(cfg: DataConfig, adapter: ModelAdapter) -> tuple[Split, Split]:
    """Read the configured dataset and split it."""
    return split_table(read_table(cfg.path), cfg, adapter)
