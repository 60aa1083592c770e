"""Without a Prefect server of its own, promotion and the audit log are serialised by the workspace's file lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

import attestflow.promotion_lock
from attestflow.audit import AuditLog
from attestflow.errors import UnavailableError
from attestflow.keys import ensure_keypair


@pytest.fixture(autouse=True)
def embedded() -> Iterator[None]:
    """No Prefect API URL: the embedded default, whatever the developer's profile says."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: None}):
        yield


def _held_elsewhere(lock_file: Path) -> bool:
    """Whether another thread fails to take the file lock at once."""
    taken: list[bool] = []

    def attempt() -> None:
        try:
            with FileLock(str(lock_file), timeout=0.1):
                taken.append(True)
        except Timeout:
            taken.append(False)

    t = threading.Thread(target=attempt)
    t.start()
    t.join()
    return not taken[0]


def test_without_a_server_promotion_holds_the_workspace_file_lock_and_re_enters(tmp_path: Path) -> None:
    assert attestflow.promotion_lock.shared_api_url() is None
    log = AuditLog.of(tmp_path)
    lock_file = tmp_path / "audit.jsonl.lock"
    with log.locked("m"):
        assert _held_elsewhere(lock_file)
        with log.locked("m"):  # re-entrant within the thread
            log.append("promotion", model="m", version="1")  # the append re-enters the same lock
        assert _held_elsewhere(lock_file)
    assert not _held_elsewhere(lock_file)
    assert log.verify()[0]


def test_a_file_lock_not_free_in_time_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attestflow.promotion_lock, "LOCK_TIMEOUT_S", 0.2)
    log = AuditLog.of(tmp_path)
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with log.locked("m"):
            held.set()
            done.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        with pytest.raises(UnavailableError, match=r"the lock of the audit log .* was not free within 0.2 s"):
            log.append("promotion", model="m", version="1")
    finally:
        done.set()
        t.join()


def test_a_log_in_a_shared_folder_keeps_its_own_file_lock(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    keys = ensure_keypair(tmp_path / "release-key")
    logs = [
        AuditLog.of(tmp_path / f"ws{i}", keys.private_key, keys.public_key, str(shared)) for i in range(2)
    ]
    logs[0].append("run_started", model="m")
    threads = [threading.Thread(target=lambda log=log: [log.append("e", model="m") for _ in range(10)])
               for log in logs]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (shared / "audit.jsonl").is_file() and not (tmp_path / "ws0" / "audit.jsonl").exists()
    assert logs[1].verify() == (True, None, "21 entries, chain intact")
