"""Markup and escape sequences in model names, paths, actors and approvers: every command keeps its
exit code, nothing reaches the terminal as markup or control codes, and `audit show` still renders."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from attestflow.audit import AuditLog
from attestflow.keys import ensure_keypair
from flows.cli import app, render

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "eve[/]\x1b[2K\x1b[1A\x1b]8;;http://evil.example\x1b\\[bold]x[/b]\x9b31m\u202e\x07"
"""Closing markup with no tag open, a cleared line and cursor-up (a fake row), an OSC 8 hyperlink,
a C1 CSI, a bidirectional override and a bell."""
CONTROL = ("\x1b", "\x9b", "\u202e", "\x07")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A release config whose workspace is empty but for a key pair and an audit log of hostile text."""
    raw = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
    raw["workspace"] = str(tmp_path / "ws")
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(raw))
    ensure_keypair(tmp_path / "ws" / "keys")
    log = AuditLog.of(tmp_path / "ws")
    log.append("run_started", model=f"m{HOSTILE}", actor=HOSTILE, flow_run_id=HOSTILE)
    log.append("approved", model=f"m{HOSTILE}", version="1", actor=HOSTILE, reason=HOSTILE, approver=HOSTILE)
    log.append("promotion", model=f"m{HOSTILE}", version="1", actor=HOSTILE, previous=None, reason=HOSTILE)
    return path


def _invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["audit", "show", "--all"], 0),
        (["audit", "show"], 0),
        (["audit", "show", "--model", f"m{HOSTILE}"], 0),
        (["audit", "verify"], 0),
        (["verify", f"models:/m{HOSTILE}@champion"], 2),
        (["lineage", HOSTILE], 2),
        (["rollback", "--model", f"m{HOSTILE}"], 2),
        (["gates", "calibrate", "--model", f"m{HOSTILE}"], 2),
        (["approve", HOSTILE, "--digest", HOSTILE, "--reason", HOSTILE], 2),
        (["evaluate", f"/no/such/{HOSTILE}.onnx"], 2),
    ],
    ids=lambda v: v[0] if isinstance(v, list) and len(v) == 1 else None,
)
def test_every_command_keeps_its_exit_code_and_prints_no_markup_or_control_codes(
    config: Path, args: list[str], code: int
) -> None:
    exit_code, output = _invoke([*args, "--config", str(config)] if args[0] != "approve" else args)
    assert exit_code == code, output
    assert "Traceback" not in output
    assert not any(c in output for c in CONTROL), repr(output)


def test_audit_show_renders_markup_as_text(config: Path) -> None:
    exit_code, output = _invoke(["audit", "show", "--all", "--config", str(config)])
    assert exit_code == 0, output
    assert "eve[/]" in output
    assert "[bold]x[/b]" in output


def test_a_config_path_with_markup_and_escapes_is_named_in_one_safe_line() -> None:
    exit_code, output = _invoke(["run", "--config", f"/no/{HOSTILE}.yaml"])
    assert exit_code == 2
    assert output.startswith("error: config file not found: /no/eve[/]")
    assert not any(c in output for c in CONTROL)


def test_the_audit_log_stores_text_as_given(config: Path) -> None:
    entries = AuditLog.of(config.parent / "ws").entries()
    assert entries[1]["details"]["approver"] == HOSTILE
    assert entries[1]["actor"] == f"user:{HOSTILE}"


def test_safe_text_is_escaped_redacted_and_stripped() -> None:
    assert render.safe(f"{HOSTILE} http://u:pw-123456789@h") == r"eve\[/]\[bold]x\[/b]31m http://***@h"
