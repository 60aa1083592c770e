"""Hostile and careless inputs: each is one line and exit 2 before any stage runs, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from attestflow.config import load_config
from attestflow.errors import ConfigError
from attestflow.keys import ensure_keypair
from attestflow.policy import load_policy
from attestflow.yamlfile import MAX_BYTES
from flows.cli import app
from tests.code.planted import Lab, linear_onnx

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/release.yaml"
POLICY = ROOT / "configs/gates.yaml"
BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['lol'] * 9)}]\n"
    for prev, name in zip(["", "a", "b", "c", "d", "e", "f", "g", "h"], "abcdefghi", strict=True)
)
"""A "billion laughs": nine levels of nine aliases each, 9^9 strings once expanded, in 0.4 KB."""


def _one_line_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    # MLflow's own log lines (creating a new workspace's database) are not the CLI's output.
    own = [line for line in result.output.splitlines() if line.strip() and " INFO mlflow" not in line]
    assert "Traceback" not in result.output and len(own) == 1, result.output


def _keypair(folder: Path, name: str) -> tuple[Path, Path]:
    """A fresh EC key pair for `name` in its own folder: (private PEM, public PEM)."""
    pair = ensure_keypair(folder / name)
    return pair.private_key, pair.public_key


def test_a_yaml_alias_bomb_in_a_config_is_refused_before_it_expands(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB + CONFIG.read_text())
    assert path.stat().st_size < 2048
    with pytest.raises(ConfigError, match=r"bomb.yaml: YAML aliases \(\*name\) are not allowed \(line 2\)"):
        load_config(path)
    with pytest.raises(ConfigError, match="YAML aliases"):
        load_policy(path)


def test_a_yaml_alias_in_a_set_value_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"--set model.options: YAML aliases \(\*name\) are not allowed"):
        load_config(CONFIG, ["model.options={a: &a [x, x], b: [*a, *a]}"])


def test_a_config_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(CONFIG.read_text() + "#" * MAX_BYTES)
    with pytest.raises(
        ConfigError, match=r"big.yaml: \d+ bytes, more than the 1048576 a config file may have"
    ):
        load_config(path)


def test_a_config_or_policy_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes(CONFIG.read_bytes().replace(b"model_name: credit-default", b"model_name: cr\xe9dit"))
    policy = tmp_path / "gates.yaml"
    policy.write_bytes(b"# r\xe8gles\n" + POLICY.read_bytes())
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte \d+\)"):
        load_config(config)
    with pytest.raises(ConfigError, match=r"gates.yaml: not UTF-8 text \(byte 3\)"):
        load_policy(policy)
    _one_line_exit_2(["run", "--config", str(config)], "not UTF-8 text")


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_an_infinite_or_nan_threshold_is_refused(tmp_path: Path, value: str) -> None:
    raw = yaml.safe_load(POLICY.read_text())
    raw["performance"]["thresholds"][0]["threshold"] = yaml.safe_load(value)
    path = tmp_path / "gates.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        ConfigError, match=r"performance.thresholds.0.threshold: Input should be a finite number"
    ):
        load_policy(path)
    with pytest.raises(ConfigError, match=r"canary.max_latency_ratio: Input should be a finite number"):
        load_config(CONFIG, [f"canary.max_latency_ratio={value}"])


def _run_args(tmp_path: Path, *overrides: str) -> list[str]:
    args = ["run", "--config", str(CONFIG), "--set", f"workspace={tmp_path / 'ws'}"]
    for item in overrides:
        args += ["--set", item]
    return args


@pytest.mark.parametrize(
    ("adapter", "message"),
    [
        ("builtins:int", "model.adapter 'builtins:int' cannot be built from the model section: TypeError"),
        ("builtins:len", "model.adapter 'builtins:len' is not a class"),
        ("collections:OrderedDict", "does not implement the ModelAdapter protocol"),
    ],
)
def test_an_adapter_that_is_not_one_is_refused_before_any_stage(
    tmp_path: Path, adapter: str, message: str
) -> None:
    _one_line_exit_2(_run_args(tmp_path, f"model.adapter={adapter}"), message)
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("{max_workers: -1}", "ValueError: max_workers must be greater than 0"),
        ("{max_workers: many}", "TypeError"),
    ],
)
def test_task_runner_options_the_runner_rejects_only_when_started_are_refused_at_load(
    tmp_path: Path, options: str, message: str
) -> None:
    runner = "prefect.task_runners:ThreadPoolTaskRunner"
    args = _run_args(tmp_path, f"gates.task_runner={runner}", f"gates.task_runner_options={options}")
    _one_line_exit_2(args, f"gates.task_runner_options: {runner} does not start with {{'max_workers'")
    assert message in CliRunner().invoke(app, args).output


def test_half_a_key_pair_is_refused_naming_the_missing_half(tmp_path: Path) -> None:
    private, public = _keypair(tmp_path, "release")
    _one_line_exit_2(
        _run_args(tmp_path, f"sign.private_key={private}"),
        "sign.private_key is set but sign.public_key is not",
    )
    _one_line_exit_2(
        _run_args(tmp_path, f"sign.public_key={public}"),
        "sign.public_key is set but sign.private_key is not",
    )


def test_two_halves_of_different_key_pairs_are_refused(tmp_path: Path) -> None:
    private, _ = _keypair(tmp_path, "one")
    _, public = _keypair(tmp_path, "other")
    _one_line_exit_2(
        _run_args(tmp_path, f"sign.private_key={private}", f"sign.public_key={public}"),
        "are not one key pair",
    )


def test_a_directory_as_data_path_is_refused_before_dvc_touches_the_repo(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    folder = repo / "data" / "tables"
    folder.mkdir(parents=True)
    (folder / "credit.csv").write_text("a,b\n1,2\n")
    ignore = repo / "data" / ".gitignore"
    ignore.write_text("/credit.csv\n")
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    _one_line_exit_2(
        _run_args(tmp_path, f"data.path={folder}", f"snapshot.repo={repo}"),
        f"data.path {folder} is a directory; the release reads one CSV or Parquet file",
    )
    assert ignore.read_text() == "/credit.csv\n"
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before


def _evaluate_config(lab: Lab, tmp_path: Path, data: Path) -> Path:
    raw = yaml.safe_load(CONFIG.read_text())
    raw.update(workspace=str(tmp_path / "ws"), model_name="credit")
    raw["data"]["path"] = str(data)
    raw["validate_data"]["suite"] = str(ROOT / "configs/expectations/credit.yaml")
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's consoles as on a terminal wide enough that no reason wraps."""
    from rich.console import Console

    from flows.cli import render

    monkeypatch.setattr(render, "console", Console(width=250))
    monkeypatch.setattr(render, "err", Console(width=250, stderr=True))


@pytest.mark.usefixtures("wide_terminal")
def test_a_model_with_nan_outputs_fails_the_gates_with_a_reason(lab: Lab, tmp_path: Path) -> None:
    n = len(lab.data.features)
    nan_model = linear_onnx(tmp_path / "nan.onnx", np.ones((n, 2)), np.array([np.nan, 0.0]))
    config = _evaluate_config(lab, tmp_path, lab.data.path)
    result = CliRunner().invoke(app, ["evaluate", str(nan_model), "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "the model's outputs are not finite (NaN or inf) on" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (None, "the data's labels include 2, which the model's 2 classes (0-1) do not"),
        ([0, 1], "label column 'default' holds '2', not among data.classes ['0', '1']"),
    ],
)
def test_data_with_a_label_the_model_does_not_have_is_bad_input(
    lab: Lab, tmp_path: Path, classes: list[int] | None, message: str
) -> None:
    table = pd.read_csv(lab.data.path)
    table.loc[table.index[::7], lab.data.label] = 2
    data = tmp_path / "three-labels.csv"
    table.to_csv(data, index=False)
    config = _evaluate_config(lab, tmp_path, data)
    raw = yaml.safe_load(config.read_text())
    raw["data"]["classes"] = classes
    config.write_text(yaml.safe_dump(raw))
    _one_line_exit_2(["evaluate", str(lab.good_onnx), "--config", str(config)], message)


def test_rollback_with_no_previous_champion_says_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import attestflow.aliases
    import attestflow.keys
    from attestflow.outcomes import PromotionRecord

    moved = PromotionRecord(model_name="credit-risk", alias="champion", version="1", previous_version=None)
    monkeypatch.setattr(attestflow.aliases, "rollback", lambda *a, **k: moved)
    monkeypatch.setattr(attestflow.keys, "trusted_public_key", lambda *a: tmp_path / "key.pub.pem")
    config = tmp_path / "release.yaml"
    config.write_text(
        yaml.safe_dump({**yaml.safe_load(CONFIG.read_text()), "workspace": str(tmp_path / "ws")})
    )
    result = CliRunner().invoke(
        app, ["rollback", "--to", "1", "--reason", "back to v1", "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert "(was unset)" in result.output and "vNone" not in result.output
