"""The workspace's background Prefect server: started once, reused while healthy, replaced when stale, stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attestflow import local_server
from attestflow.errors import BadInputError


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_record_is_replaced_a_healthy_server_reused_and_stop_ends_it(tmp_path: Path) -> None:
    home = tmp_path / "prefect"
    home.mkdir()
    (home / local_server.STATE_FILE).write_text(
        json.dumps({"pid": _dead_pid(), "port": 9, "home": str(home)})
    )
    assert local_server.running(home) is None  # the recorded pid is gone: stale
    server, started = local_server.start(home)
    try:
        assert started and server.pid != 9
        assert local_server.running(home) == server
        assert local_server.recorded(home) == server
        again, started_again = local_server.start(home)
        assert again == server and not started_again  # reused, not started twice
    finally:
        stopped = local_server.stop(home)
    assert stopped == server
    assert local_server.running(home) is None and local_server.recorded(home) is None
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
    assert local_server.stop(home) is None  # nothing left to stop


def test_a_record_naming_another_live_process_is_not_taken_for_the_server(tmp_path: Path) -> None:
    home = tmp_path / "prefect"
    home.mkdir()
    (home / local_server.STATE_FILE).write_text(
        json.dumps({"pid": os.getpid(), "port": 9, "home": str(home)})
    )
    assert local_server.running(home) is None
    assert local_server.stop(home) is None  # and this process is not stopped
    assert local_server.recorded(home) is None


def test_the_mode_is_background_by_default_temporary_on_request_and_else_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(local_server.MODE_ENV, raising=False)
    assert local_server.background_wanted()
    monkeypatch.setenv(local_server.MODE_ENV, "temporary")
    assert not local_server.background_wanted()
    monkeypatch.setenv(local_server.MODE_ENV, "sometimes")
    with pytest.raises(BadInputError, match="ATTESTFLOW_LOCAL_API"):
        local_server.background_wanted()


def test_a_run_with_an_api_url_configured_starts_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from flows.cli.server import api_for_run

    def refuse(home: Path) -> None:
        raise AssertionError("a server was started although an API is configured")

    monkeypatch.setenv(local_server.MODE_ENV, "background")
    monkeypatch.setattr(local_server, "start", refuse)
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}), api_for_run():
        assert get_current_settings().api.url == "http://127.0.0.1:9/api"
    monkeypatch.setenv(local_server.MODE_ENV, "temporary")
    with temporary_settings({PREFECT_API_URL: None}), api_for_run():
        assert get_current_settings().api.url is None
