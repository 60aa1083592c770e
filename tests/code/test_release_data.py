"""A table or base checkpoint the release cannot train on is one line when the release opens, before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from attestflow.audit import AuditLog
from attestflow.config import ReleaseConfig
from attestflow.errors import BadInputError
from attestflow.preflight import check_release_data
from attestflow.tabular import TabularMLP, save_checkpoint
from attestflow.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ["a", "b", "c"]


def _table(rows: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    df["y"] = np.arange(rows) % 3
    return df


def _config(tmp_path: Path, df: pd.DataFrame, **sections: dict[str, Any]) -> ReleaseConfig:
    df.to_csv(tmp_path / "table.csv", index=False)
    raw: dict[str, Any] = {
        "workspace": str(tmp_path / "ws"),
        "model_name": "mine",
        "data": {"path": str(tmp_path / "table.csv"), "label": "y", "features": FEATURES},
        "validate_data": {"suite": str(tmp_path / "suite.yaml")},
        "fine_tune": {"epochs": 1},
        "gates": {"policy": str(ROOT / "configs/gates.yaml")},
        "sign": {"allow_dirty": True},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return ReleaseConfig.model_validate(raw)


def _refused(cfg: ReleaseConfig, message: str) -> None:
    with pytest.raises(BadInputError) as e:
        check_release_data(cfg)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def _base(tmp_path: Path, n_features: int, n_classes: int, hidden: tuple[int, ...] = (8,)) -> str:
    path = tmp_path / "base.safetensors"
    save_checkpoint(TabularMLP(n_features, hidden, n_classes), path)
    return str(path)


def test_the_classes_are_filled_in_from_the_data_when_unset(tmp_path: Path) -> None:
    cfg = _config(tmp_path, _table())
    assert cfg.data.classes is None
    assert check_release_data(cfg).data.classes == [0, 1, 2]
    given = _config(tmp_path, _table(), data={"classes": [2, 1, 0]})
    assert check_release_data(given).data.classes == [2, 1, 0]


def test_a_base_that_fits_the_data_is_accepted(tmp_path: Path) -> None:
    cfg = _config(tmp_path, _table(), fine_tune={"base_checkpoint": _base(tmp_path, 3, 3)})
    assert check_release_data(cfg).data.classes == [0, 1, 2]


def test_a_base_with_another_input_width_is_refused(tmp_path: Path) -> None:
    base = _base(tmp_path, 7, 3)
    _refused(
        _config(tmp_path, _table(), fine_tune={"base_checkpoint": base}),
        f"base checkpoint {base} takes 7 features, data.features has 3; "
        "unset fine_tune.base_checkpoint to train from scratch",
    )


def test_a_base_with_another_class_count_is_refused(tmp_path: Path) -> None:
    base = _base(tmp_path, 3, 2)
    _refused(
        _config(tmp_path, _table(), fine_tune={"base_checkpoint": base}),
        f"base checkpoint {base} has 2 classes, the label 'y' has 3; unset fine_tune.base_checkpoint",
    )


def test_hidden_layers_that_contradict_the_base_are_refused(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        _table(),
        fine_tune={"base_checkpoint": _base(tmp_path, 3, 3, hidden=(8,))},
        model={"options": {"hidden": [16]}},
    )
    _refused(cfg, "model.options.hidden [16] differs from base checkpoint")


def test_a_label_with_one_class_is_refused(tmp_path: Path) -> None:
    df = _table()
    df["y"] = 1
    _refused(_config(tmp_path, df), "label column 'y' has one class (1): a classifier needs two")


def test_a_label_with_one_class_is_refused_even_when_the_config_lists_two(tmp_path: Path) -> None:
    df = _table()
    df["y"] = 1
    _refused(_config(tmp_path, df, data={"classes": [0, 1]}), "label column 'y' has one class (1)")


def test_a_missing_label_column_is_refused(tmp_path: Path) -> None:
    _refused(_config(tmp_path, _table().drop(columns="y")), "data.label 'y' is not a column of")


def test_a_missing_label_value_is_refused(tmp_path: Path) -> None:
    df = _table().astype({"y": float})
    df.loc[3, "y"] = np.nan
    _refused(_config(tmp_path, df), "label column 'y' has 1 missing value(s)")


def test_a_label_value_outside_the_configured_classes_is_refused(tmp_path: Path) -> None:
    _refused(_config(tmp_path, _table(), data={"classes": [0, 1]}), "label column 'y' holds '2', not among")


def test_a_missing_feature_column_is_refused(tmp_path: Path) -> None:
    _refused(_config(tmp_path, _table().drop(columns="b")), "data.features: 'b' not column(s) of")


def test_a_non_numeric_feature_is_refused_with_the_fix(tmp_path: Path) -> None:
    df = _table()
    df["b"] = np.where(df["a"] > 0, "red", "blue")
    _refused(
        _config(tmp_path, df),
        "data.features 'b' are not numeric (the tabular model reads numbers): "
        "encode them as numbers or drop them from data.features",
    )


def test_a_missing_feature_value_is_refused_naming_column_count_and_both_fixes(tmp_path: Path) -> None:
    df = _table()
    df.loc[[2, 5], "c"] = np.nan
    _refused(
        _config(tmp_path, df),
        "missing feature values ('c': 2): fill them in the data, or set data.missing: median",
    )
    assert check_release_data(_config(tmp_path, df, data={"missing": "median"})).data.classes == [0, 1, 2]


def test_a_feature_with_no_value_at_all_is_refused_even_when_imputed(tmp_path: Path) -> None:
    df = _table()
    df["c"] = np.nan
    _refused(_config(tmp_path, df, data={"missing": "median"}), "data.features 'c' have no values")


def test_opening_a_release_refuses_bad_data_before_any_work(tmp_path: Path) -> None:
    from attestflow.context import open_release

    df = _table()
    df["y"] = 1
    cfg = _config(tmp_path, df)
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    with pytest.raises(BadInputError, match="has one class"):
        open_release(path, [], flow_run_id="r1")
    ws = Workspace.at(tmp_path / "ws")
    assert not ws.releases.exists() and not ws.training.exists()
    (entry,) = [e for e in AuditLog.of(ws.root).entries() if e["event"] == "release_failed"]
    assert entry["details"]["stage"] == "start" and "has one class" in entry["details"]["reason"]
