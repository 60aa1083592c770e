"""A malformed audit line or head file is named by `audit verify` and skipped with a warning by `audit show`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from attestflow.audit import AuditLog, parse_entry
from flows.cli import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    log = AuditLog.of(tmp_path / "ws")
    log.append("promotion", model="m", version="1", alias="champion", previous=None)
    log.append("promotion", model="m", version="2", alias="champion", previous="1")
    return log


def _insert(log: AuditLog, line: bytes, at: int = 1) -> None:
    lines = log.path.read_bytes().splitlines()
    lines.insert(at, line)
    log.path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "a JSON list, not an entry object"),
        (b'"promotion"', "a JSON str, not an entry object"),
        (b'{"seq": 2, "event": "promotion"}', "an entry without a valid 'time'"),
        (b'{"seq": "2", "time": "t", "event": "e", "actor": "a", "details": {}, "prev": "p"}', "valid 'seq'"),
        (b"\xff\xfe{}", "not valid JSON"),
    ],
)
def test_a_malformed_line_is_named_by_verify_and_left_out_of_the_entries(
    log: AuditLog, line: bytes, reason: str
) -> None:
    _insert(log, line)
    ok, number, why = log.verify()
    assert not ok and number == 2 and reason in why
    skipped: list[int] = []
    entries = log.entries(skipped=skipped)
    assert skipped == [2] and [e["version"] for e in entries] == ["1", "2"]


def test_every_written_entry_parses(log: AuditLog) -> None:
    for line in log.path.read_text().splitlines():
        entry, problem = parse_entry(line)
        assert entry is not None and problem == ""


def test_a_corrupt_head_file_fails_verification_without_a_traceback(log: AuditLog) -> None:
    for corrupt in ("{", "[]", '{"seq": "x", "sha256": 1}', '{"seq": 1}'):
        log.head_path.write_text(corrupt)
        ok, number, why = log.verify()
        assert not ok and number is None and why == "the head file audit.jsonl.head is corrupt"


def _config(tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
    raw["workspace"] = str(tmp_path / "ws")
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_audit_verify_names_the_malformed_line_and_audit_show_skips_it(log: AuditLog, tmp_path: Path) -> None:
    _insert(log, b"[1, 2]")
    config = str(_config(tmp_path))
    verify = CliRunner().invoke(app, ["audit", "verify", "--config", config])
    assert verify.exit_code == 1, verify.output
    assert "audit log broken at line 2" in verify.output and "not an entry object" in verify.output
    show = CliRunner().invoke(app, ["audit", "show", "--config", config])
    assert show.exit_code == 1 and "Traceback" not in show.output, show.output
    assert "1 malformed audit line(s) not shown: 2" in show.output
    assert "audit history" in show.output and "promotion" in show.output


def test_audit_show_renders_with_a_corrupt_head(log: AuditLog, tmp_path: Path) -> None:
    log.head_path.write_text("not json")
    show = CliRunner().invoke(app, ["audit", "show", "--config", str(_config(tmp_path))])
    assert show.exit_code == 1 and "Traceback" not in show.output, show.output
    assert "the head file audit.jsonl.head is corrupt" in show.output and "promotion" in show.output
