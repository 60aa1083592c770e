"""`make stack-up` / `stack-down` (attestflow.stack): a server that does not start, stopping for sure."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from attestflow import stack as stack_module
from attestflow.stack import __main__ as stack_cli
from attestflow.stack.services import Process, alive, group_members, spawn, stop_group
from tests.stack import stack_workspace


def test_a_server_that_does_not_start_stops_the_others_and_exits_3_with_the_end_of_its_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken-server"
    broken.write_text("#!/bin/sh\necho 'boom: no such database driver'\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(stack_module, "venv_command", lambda name: str(broken))  # prefect and mlflow
    started: list[Process] = []
    for name in ("start_moto", "start_postgres", "spawn"):
        real = getattr(stack_module, name)
        monkeypatch.setattr(stack_module, name, _recorded(real, started))
    with stack_workspace() as workspace:
        assert stack_cli.main(["up", "--workspace", str(workspace)]) == 3
        assert [p.name for p in started] == ["moto", "postgresql", "prefect", "mlflow"]
        assert not any(alive(p.pid) or group_members(p.pid) for p in started)
        assert not stack_module.record_path(workspace).exists()
        assert not stack_module.env_path(workspace).exists()
        logs = workspace / "stack" / "logs"
        assert "database system is shut down" in (logs / "postgresql.log").read_text()
    err = capsys.readouterr().err
    assert err.startswith("error: prefect exited while starting")
    assert "boom: no such database driver" in err


def _recorded(start: Callable[..., Process], started: list[Process]) -> Callable[..., Process]:
    def recording(*args: Any, **kwargs: Any) -> Process:
        proc = start(*args, **kwargs)
        started.append(proc)
        return proc

    return recording


def test_stack_down_without_a_stack_stops_nothing_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack_module.down(tmp_path) == []
    assert stack_cli.main(["down", "--workspace", str(tmp_path)]) == 0
    assert stack_cli.main(["status", "--workspace", str(tmp_path)]) == 1
    assert capsys.readouterr().out == "the stack is not running\nthe stack is not running\n"


def test_a_server_that_ignores_sigterm_is_killed_with_its_children(tmp_path: Path) -> None:
    script = "trap '' TERM; sleep 300 & sleep 300 & echo started; wait"
    proc = spawn(
        "stubborn", ["sh", "-c", script], tmp_path / "stubborn.log", 0, {"PATH": "/usr/bin:/bin"}, tmp_path
    )
    deadline = time.monotonic() + 10
    while len(group_members(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    members = group_members(proc.pid)
    assert len(members) == 3
    stop_group(proc, timeout_s=0.5)
    assert group_members(proc.pid) == []
    assert not any(alive(pid) for pid in members)


def test_stack_up_when_the_stack_is_up_says_so_and_keeps_it(stack: stack_module.Stack) -> None:
    again = subprocess.run(
        [sys.executable, "-m", "attestflow.stack", "up", "--workspace", str(stack.workspace)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("the stack is already up:")
    assert stack_module.load(stack.workspace) == stack
    assert all(stack.running().values())
    env_file = stack_module.env_path(stack.workspace).read_text()
    for key, value in stack.env.items():
        assert f"export {key}={value}\n" in env_file
