"""An append killed mid-write: its torn last line is not an entry, and the next append cuts it off, audited."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attestflow.audit import TORN, UNSIGNED, AuditLog, MalformedAuditError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    log = AuditLog.of(tmp_path / "ws")
    log.append("run_started", model="m", flow_run_id="r1")
    log.append("promotion", model="m", version="1", alias="champion", previous=None)
    return log


def test_a_torn_last_line_is_left_out_and_the_next_append_cuts_it_off_and_audits_it(log: AuditLog) -> None:
    torn = b'{"actor":"ci","details":{"alias":"champion"},"event":"promo'
    with open(log.path, "ab") as f:
        f.write(torn)
    ok, line, reason = log.verify()
    assert ok and line is None and f"a torn last line ({len(torn)} bytes" in reason
    assert [e["event"] for e in log.entries()] == ["run_started", "promotion"]

    log.append("rollback", model="m", version="1", alias="champion", previous="1")
    cut, appended = log.entries()[2:]
    assert cut["event"] == TORN and appended["event"] == "rollback"
    assert cut["details"] == {
        "bytes": len(torn),
        "sha256": hashlib.sha256(torn).hexdigest(),
        "kept_in": "audit.jsonl.torn",
    }
    assert log.path.with_name("audit.jsonl.torn").read_bytes() == torn + b"\n"
    assert log.verify() == (True, None, "4 entries, chain intact")


def test_a_signed_last_line_cut_short_fails_verify_and_is_not_cut_by_the_next_append(log: AuditLog) -> None:
    data = log.path.read_bytes()
    log.path.write_bytes(data[:-10])  # the newest entry, covered by the signed head, lost its end
    ok, line, reason = log.verify()
    assert not ok and line == 2 and "entry 2 was recorded but is gone" in reason
    with pytest.raises(MalformedAuditError, match="cut short but the signed head names entry 2"):
        log.append("rollback", model="m", version="1", alias="champion", previous="1")
    assert log.path.read_bytes() == data[:-10]


def test_a_whole_line_no_head_signed_is_named_by_verify_and_by_the_next_append(log: AuditLog) -> None:
    signed = log.head_path.read_bytes()
    log.append("rollback", model="m", version="1", alias="champion", previous="1")
    log.head_path.write_bytes(signed)  # killed after the line was written, before its head was signed
    ok, line, reason = log.verify()
    assert not ok and line == 3 and "killed before it signed the head" in reason

    log.append("run_started", model="m", flow_run_id="r2")
    named = log.entries()[3]
    assert named["event"] == UNSIGNED and (named["details"]["first"], named["details"]["last"]) == (3, 3)
    assert (
        named["details"]["last_sha256"]
        == hashlib.sha256(log.path.read_text().splitlines()[2].encode()).hexdigest()
    )
    assert log.verify() == (True, None, "5 entries, chain intact")


APPEND_BIG = """
import sys
from pathlib import Path
from attestflow.audit import AuditLog
AuditLog.of(Path(sys.argv[1])).append("gate", model="m", version="1", blob="x" * 4_000_000)
"""


def test_an_append_killed_with_sigkill_as_it_writes_leaves_a_log_the_next_append_makes_whole(
    tmp_path: Path,
) -> None:
    log = AuditLog.of(tmp_path / "ws")
    log.append("run_started", model="m")
    size = log.path.stat().st_size
    child = subprocess.Popen([sys.executable, "-c", APPEND_BIG, str(log.path.parent)], cwd=ROOT)
    deadline = time.monotonic() + 60
    while log.path.stat().st_size == size and child.poll() is None and time.monotonic() < deadline:
        pass
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    assert log.path.stat().st_size > size, "the child was killed before it wrote"

    log.append("run_started", model="m")
    assert log.verify()[0], log.verify()
    events = [e["event"] for e in log.entries()]
    assert events[0] == events[-1] == "run_started" and set(events[1:-1]) <= {"gate", TORN, UNSIGNED}
