"""Reading the tabular dataset and splitting it the same way in every stage.

The split is a pure function of the row's position and a seed, so training, ONNX validation
and the gates all see the same held-out rows without passing data between stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from attestflow.config import DataConfig
from attestflow.errors import BadInputError


@dataclass(frozen=True)
class Split:
    """Features and labels of one side of the split, as float32/int64 arrays."""

    x: np.ndarray
    y: np.ndarray
    sensitive: np.ndarray | None


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet table; a missing or unreadable file is bad input."""
    if not path.is_file():
        raise BadInputError(f"data file not found: {path}")
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


def split_table(df: pd.DataFrame, cfg: DataConfig) -> tuple[Split, Split]:
    """Train and held-out splits of `df` with the configured columns."""
    missing = [c for c in [*cfg.features, cfg.label] if c not in df.columns]
    if missing:
        raise BadInputError(f"data is missing column(s): {', '.join(missing)}")
    mask = test_mask(len(df), cfg.test_fraction, cfg.split_seed)

    def side(rows: pd.DataFrame) -> Split:
        sens = rows[cfg.sensitive].to_numpy() if cfg.sensitive in rows.columns else None
        return Split(
            x=rows[cfg.features].to_numpy(dtype=np.float32, copy=True),
            y=rows[cfg.label].to_numpy(dtype=np.int64, copy=True),
            sensitive=sens,
        )

    return side(df[~mask]), side(df[mask])


def load_splits(cfg: DataConfig) -> tuple[Split, Split]:
    """Read the configured dataset and split it."""
    return split_table(read_table(cfg.path), cfg)
