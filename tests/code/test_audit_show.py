"""`audit show` lists every event of a model by default (failed releases included); `--promotions` only alias moves."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from attestflow.audit import AuditLog, model_events
from flows.cli import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A release config whose workspace's log holds two models' starts, a failure, a refusal and moves."""
    log = AuditLog.of(tmp_path / "ws")
    log.append("run_started", model="m", flow_run_id="r1")
    log.append("promotion", model="m", version="1", alias="champion", previous=None)
    log.append("run_started", model="m", flow_run_id="r2")
    log.append(
        "release_failed",
        model="m",
        flow_run_id="r2",
        stage="validate_data",
        reason="[bold]column 'x' is missing[/] https://alice:s3cret@h.example",
        exit_code=2,
    )
    log.append("release_refused", model="m", version="2", reasons=["gate performance: accuracy 0.5"])
    log.append("run_started", model="other", flow_run_id="r3")
    raw = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
    raw["workspace"] = str(tmp_path / "ws")
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _show(config: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["audit", "show", "--config", str(config), *args])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    return result.output


def test_model_events_are_every_event_of_the_model_in_order(config: Path) -> None:
    entries = AuditLog.of(config.parent / "ws").entries()
    assert [e["seq"] for e in model_events(entries, "m")] == [1, 2, 3, 4, 5]
    assert [e["seq"] for e in model_events(entries)] == [1, 2, 3, 4, 5, 6]


def test_audit_show_lists_every_event_of_the_model_by_default(config: Path) -> None:
    out = _show(config, "--model", "m")
    for event in ("run_started", "promotion", "release_failed", "release_refused"):
        assert event in out
    assert "other" not in out
    assert "stage=validate_data, reason=[bold]column 'x' is missing[/]" in out
    assert "s3cret" not in out and "exit_code=2" in out


def test_audit_show_promotions_lists_only_alias_moves(config: Path) -> None:
    out = _show(config, "--promotions")
    assert "promotion" in out
    for event in ("run_started", "release_failed", "release_refused"):
        assert event not in out


def test_audit_show_still_accepts_the_deprecated_all_flag(config: Path) -> None:
    assert _show(config, "--all") == _show(config)
    assert "release_failed" in _show(config, "--all") and "other" in _show(config, "--all")


def test_audit_show_help_offers_promotions_and_hides_all() -> None:
    result = CliRunner().invoke(app, ["audit", "show", "--help"], terminal_width=200)
    assert "--promotions" in result.output and "--all" not in result.output
