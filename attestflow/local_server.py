"""The workspace's own Prefect server: started once in the background, reused by every later run.

Without ``PREFECT_API_URL``, each process that runs a flow would start Prefect's temporary API
and stop it on exit: several seconds per `attestflow run` (measured: 7 s on a 2-core machine).
Instead the first run starts ``prefect server start`` on a free localhost port, on the same
SQLite database the temporary API would have used (``$PREFECT_HOME/prefect.db``, the
workspace's), detached from the terminal, and records its pid and port in
``$PREFECT_HOME/attestflow-server.json``. A later run reuses it after checking that the pid is
still that server and that it answers ``/api/health``; a record that fails either check is
stale, and is replaced by a fresh server. Starting is serialised by a file lock, so two runs at
once start one server. `attestflow server stop` stops it (`attestflow server status` shows it);
the server also serves the dashboard at its address.

``ATTESTFLOW_LOCAL_API=temporary`` keeps the old behaviour (a temporary API per process and
nothing left running; the test suite sets it). A ``PREFECT_API_URL`` set by the user always
wins: none of this runs then.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from attestflow.errors import BadInputError, UnavailableError

MODE_ENV = "ATTESTFLOW_LOCAL_API"
"""``background`` (the default): a server per workspace, reused; ``temporary``: Prefect's own per process."""
STATE_FILE = "attestflow-server.json"
STARTUP_TIMEOUT_S = 180.0
"""A first start creates and migrates the database: on a busy 2-core machine it can take a minute."""


@dataclass(frozen=True)
class LocalServer:
    """A background Prefect server of a workspace, as its state file records it."""

    pid: int
    port: int
    home: str

    @property
    def url(self) -> str:
        """The API URL (the dashboard is at the same address, without ``/api``)."""
        return f"http://127.0.0.1:{self.port}/api"


def background_wanted() -> bool:
    """Whether runs without an API URL use the workspace's background server (else a temporary API)."""
    mode = os.environ.get(MODE_ENV, "background").strip().lower()
    if mode not in ("background", "temporary"):
        raise BadInputError(f"{MODE_ENV}={mode!r}: use background or temporary")
    return mode == "background"


def _state_path(home: Path) -> Path:
    return home / STATE_FILE


def recorded(home: Path) -> LocalServer | None:
    """The server the state file under `home` records, checked or not; None without a readable record."""
    try:
        raw = json.loads(_state_path(home).read_text())
        return LocalServer(pid=int(raw["pid"]), port=int(raw["port"]), home=str(raw["home"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _is_that_server(server: LocalServer) -> bool:
    """Whether `server.pid` is alive and is a ``prefect server start`` on `server.port` (a pid may be reused)."""
    try:
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(server.pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): the pid is alive, and /health decides
    args = [a.decode(errors="replace") for a in cmdline]
    return "server" in args and "start" in args and str(server.port) in args


def _answers(server: LocalServer, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{server.url}/health", timeout=timeout_s) as resp:  # noqa: S310 - localhost
            return bool(resp.status == 200)
    except OSError:
        return False


def running(home: Path) -> LocalServer | None:
    """The workspace's background server if it is alive and healthy; None otherwise."""
    server = recorded(home)
    if server is None or not _is_that_server(server) or not _answers(server):
        return None
    return server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(home: Path) -> tuple[LocalServer, bool]:
    """The workspace's background server, started unless a healthy one runs; (server, whether started now)."""
    from filelock import FileLock

    home.mkdir(parents=True, exist_ok=True)
    with FileLock(str(home / "attestflow-server.lock"), timeout=STARTUP_TIMEOUT_S):
        server = running(home)
        if server is not None:
            return server, False
        stale = recorded(home)
        if stale is not None and _is_that_server(stale):  # alive but not answering: replace it
            _terminate(stale.pid)
        _state_path(home).unlink(missing_ok=True)
        server = _spawn(home)
        _state_path(home).write_text(json.dumps(asdict(server)))
        return server, True


def _spawn(home: Path) -> LocalServer:
    """Start ``prefect server start`` on a free port, detached, and wait until it answers."""
    port = _free_port()
    server = LocalServer(pid=0, port=port, home=str(home))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_API_URL=server.url,  # the dashboard calls the API here, whatever --port says
    )
    prefect = Path(sys.executable).with_name("prefect")
    log_path = home / "attestflow-server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(  # noqa: S603 - the venv's prefect, no shell
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not stopped by the terminal's Ctrl-C of the run that started it
        )
    server = LocalServer(pid=proc.pid, port=port, home=str(home))
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not _answers(server):
        if proc.poll() is not None or time.monotonic() > deadline:
            _terminate(proc.pid)
            raise UnavailableError(f"the local Prefect server did not start: see {log_path}")
        time.sleep(0.2)
    return server


def _terminate(pid: int, grace_s: float = 20.0) -> None:
    """Stop the process group of `pid` (the server and its workers): TERM, then KILL after `grace_s`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child: reap it
                return
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
    with suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def stop(home: Path) -> LocalServer | None:
    """Stop the workspace's background server and remove its record; the server stopped, or None."""
    from filelock import FileLock

    if not home.is_dir():
        return None
    with FileLock(str(home / "attestflow-server.lock"), timeout=STARTUP_TIMEOUT_S):
        server = recorded(home)
        _state_path(home).unlink(missing_ok=True)
        if server is None or not _is_that_server(server):
            return None
        _terminate(server.pid)
        return server
