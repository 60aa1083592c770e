"""The CLI's exit-code contract for bad input: one clear line, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--config", "does/not/exist.yaml"], "config file not found"),
        (["run", "--config", str(ROOT / "configs/release.yaml"), "--set", "fine_tune.epochs=zero"], "epochs"),
        (["run", "--config", str(ROOT / "configs/release.yaml"), "--set", "nonsense"], "KEY=VALUE"),
        (
            ["run", "--config", str(ROOT / "configs/release.yaml"), "--set", "data.path=/no/such.csv"],
            "data.path: /no/such.csv does not exist",
        ),
        (
            ["run", "--config", str(ROOT / "configs/release.yaml"), "--set", "gates.policy=/no/gates.yaml"],
            "gate policy not found: /no/gates.yaml",
        ),
        (
            ["run", "--config", str(ROOT / "configs/release.yaml"), "--set", "model.adapter=nope.mod:X"],
            "model.adapter 'nope.mod:X' cannot be imported",
        ),
        (
            ["run", "--config", str(ROOT / "configs/release.yaml"), "--set", "model.options.foo=1"],
            "model.options: the tabular adapter takes none",
        ),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") <= 2
