"""The release config: typed, strict, overridable, and clear about what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from attestflow.config import load_config
from attestflow.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_bundled_config_loads_with_every_stage_section() -> None:
    cfg = load_config(ROOT / "configs/release.yaml")
    assert cfg.fine_tune.epochs >= 1
    assert cfg.promote.alias == "champion"
    assert cfg.digest().algorithm == "sha256"


def test_set_overrides_are_typed_like_the_file() -> None:
    cfg = load_config(ROOT / "configs/release.yaml", ["fine_tune.epochs=3", "gates.policy=strict.yaml"])
    assert cfg.fine_tune.epochs == 3
    assert cfg.gates.policy == Path("strict.yaml")


def test_digest_changes_when_any_setting_changes() -> None:
    a = load_config(ROOT / "configs/release.yaml")
    b = load_config(ROOT / "configs/release.yaml", ["fine_tune.lr=0.01"])
    assert a.digest() != b.digest()


def test_unknown_key_is_named(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
    raw["fine_tune"]["epoch"] = 3
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"unknown key 'fine_tune.epoch'"):
        load_config(path)


def test_bad_value_names_the_key_and_the_value() -> None:
    with pytest.raises(ConfigError, match=r"fine_tune.epochs: .*greater than or equal to 1.*got -1"):
        load_config(ROOT / "configs/release.yaml", ["fine_tune.epochs=-1"])


def test_missing_section_is_named(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
    del raw["data"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"missing required key 'data'"):
        load_config(path)


def test_missing_file_and_broken_yaml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_malformed_set_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(ROOT / "configs/release.yaml", ["fine_tune.epochs"])
    with pytest.raises(ConfigError, match="is not a section"):
        load_config(ROOT / "configs/release.yaml", ["model_name.x=1"])
