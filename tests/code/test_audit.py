"""The audit log is append-only in effect: any edit, deletion or reordering is detected."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from attestflow.audit import AuditLog, champion_history


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    log = AuditLog.of(tmp_path)
    log.append("run_started", model="m", flow_run_id="r1")
    log.append("promotion", model="m", version="1", alias="champion", previous=None)
    log.append("promotion", model="m", version="2", alias="champion", previous="1")
    log.append("rollback", model="m", version="1", alias="champion", previous="2")
    return log


def test_an_untouched_log_verifies(log: AuditLog) -> None:
    assert log.verify() == (True, None, "4 entries, chain intact")


def test_editing_a_line_is_detected_at_the_next_line(log: AuditLog) -> None:
    lines = log.path.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["version"] = "9"
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    log.path.write_text("\n".join(lines) + "\n")
    ok, bad, reason = log.verify()
    assert not ok and bad == 3 and "does not chain" in reason


def test_deleting_a_line_is_detected(log: AuditLog) -> None:
    lines = log.path.read_text().splitlines()
    del lines[2]
    log.path.write_text("\n".join(lines) + "\n")
    assert log.verify()[:2] == (False, 3)


def test_deleting_the_last_line_is_detected_by_the_head(log: AuditLog) -> None:
    lines = log.path.read_text().splitlines()
    anchor = log.head()
    log.path.write_text("\n".join(lines[:-1]) + "\n")
    ok, bad, reason = log.verify()
    assert not ok and bad == 4 and "gone" in reason
    log.head_path.unlink()  # an attacker who also deletes the head is caught by an anchor kept elsewhere
    assert not log.verify(anchors=[anchor])[0]  # type: ignore[list-item]


def test_reordering_lines_is_detected(log: AuditLog) -> None:
    lines = log.path.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    log.path.write_text("\n".join(lines) + "\n")
    assert log.verify()[:2] == (False, 2)


def test_credentials_in_uris_are_never_written(tmp_path: Path) -> None:
    log = AuditLog.of(tmp_path)
    log.append("run_started", tracking_uri="https://alice:s3cret@mlflow.example.com/api?token=abc")
    text = log.path.read_text()
    assert "s3cret" not in text and "token=abc" not in text and "mlflow.example.com" in text


def test_concurrent_appends_keep_the_chain(tmp_path: Path) -> None:
    log = AuditLog.of(tmp_path)
    threads = [
        threading.Thread(target=lambda i=i: [log.append("e", n=i) for _ in range(10)]) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.verify()[0] and len(log.entries()) == 40


def test_champion_history_lists_alias_moves_only(log: AuditLog) -> None:
    assert [(e["event"], e["version"]) for e in champion_history(log.entries(), "m")] == [
        ("promotion", "1"),
        ("promotion", "2"),
        ("rollback", "1"),
    ]
