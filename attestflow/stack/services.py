"""The stack's servers as local processes: start one, wait until it answers, stop it for sure.

Each HTTP server runs in a session of its own (its own process group), so that stopping it
ends every child it forked (uvicorn workers, Prefect's services) and can prove none is left,
and so that Ctrl-C in the shell that ran `make stack-up` does not reach it. PostgreSQL is
started and stopped by `pg_ctl`; as root it runs as the ``postgres`` user, because `initdb`
and `postgres` refuse root. Linux only: liveness is read from ``/proc``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from attestflow.errors import UnavailableError


def _pg_bin() -> Path:
    """``ATTESTFLOW_PG_BIN``, else the newest Debian PostgreSQL with an ``initdb`` (15 on these machines)."""
    configured = os.environ.get("ATTESTFLOW_PG_BIN")
    if configured:
        return Path(configured)
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
PG_SYSTEM_USER = "postgres"
START_TIMEOUT_S = 180.0

_children: dict[int, subprocess.Popen[bytes]] = {}
"""Servers this process started, kept so that stopping them also reaps them (no zombies)."""


@dataclass(frozen=True)
class Process:
    """A server the stack started: its name, process (group) id, port and log file."""

    name: str
    pid: int
    port: int
    log: str

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def venv_command(name: str) -> str:
    """The console script `name` beside this Python (the project's virtual environment)."""
    return str(Path(sys.executable).with_name(name))


def log_tail(path: str | Path, chars: int = 2000) -> str:
    """The end of a log file, or a note that there is none."""
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return f"(no log at {path})"


def spawn(name: str, argv: list[str], log: Path, port: int, env: dict[str, str], cwd: Path) -> Process:
    """Start `argv` in its own session, output to `log`; the server it runs listens on `port`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        child = subprocess.Popen(  # noqa: S603 - the stack's own server commands, no shell
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    _children[child.pid] = child
    return Process(name, child.pid, port, str(log))


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of `pid` from /proc, None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


def alive(pid: int) -> bool:
    """`pid` runs (a zombie does not)."""
    _reap(pid)
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid`."""
    _reap(pgid)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                found.append(int(entry))
    return found


def wait_http(proc: Process, path: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait until the server answers 200 on `path`; raise `UnavailableError` with its log if it never does."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(proc.pid):
            raise UnavailableError(
                f"{proc.name} exited while starting; end of {proc.log}:\n{log_tail(proc.log)}"
            )
        try:
            if httpx.get(proc.url(path), timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise UnavailableError(
        f"{proc.name} did not answer on {proc.url(path)} within {timeout_s:.0f} s; "
        f"end of {proc.log}:\n{log_tail(proc.log)}"
    )


def stop_group(proc: Process, timeout_s: float = 30) -> None:
    """SIGTERM the process group of `proc`, SIGKILL what is left after `timeout_s`, and check none is left."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        if not group_members(proc.pid):
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    left = group_members(proc.pid)
    if left:
        raise UnavailableError(f"{proc.name}: processes {left} are still running after SIGKILL")
    child = _children.pop(proc.pid, None)
    if child is not None:
        child.wait(timeout=5)


# PostgreSQL ---------------------------------------------------------------------------------


def _pg_user() -> str | None:
    """The system user PostgreSQL runs as: ``postgres`` when we are root, else ourselves."""
    return PG_SYSTEM_USER if os.geteuid() == 0 else None


def _as_pg_user(argv: list[str]) -> list[str]:
    user = _pg_user()
    return ["runuser", "-u", user, "--", *argv] if user else argv


def _give_to_pg_user(*paths: Path) -> None:
    user = _pg_user()
    for path in paths:
        if user:
            shutil.chown(path, user, user)


def _pg_run(argv: list[str], what: str, log: Path) -> None:
    done = subprocess.run(  # noqa: S603 - PostgreSQL's own tools, no shell
        _as_pg_user(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise UnavailableError(
            f"PostgreSQL: {what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-1500:]}"
            f"\nend of {log}:\n{log_tail(log)}"
        )


def start_postgres(data: Path, log: Path, databases: tuple[str, ...]) -> Process:
    """A fresh PostgreSQL cluster in `data` on a free port, trust auth on 127.0.0.1 only, with `databases`."""
    if not (PG_BIN / "initdb").is_file():
        raise UnavailableError(f"PostgreSQL not found: no initdb in {PG_BIN} (set ATTESTFLOW_PG_BIN)")
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    _give_to_pg_user(data, log)
    what = f"a check that the {_pg_user()} user can write {data} (every parent folder must let it in)"
    _pg_run(["test", "-w", str(data), "-a", "-w", str(log)], what, log)
    _pg_run(
        [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
        "initdb",
        log,
    )
    port = free_port()
    # No Unix socket: clients use TCP, and a socket path over 107 characters would fail.
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options]
    _pg_run([*pg_ctl, "start"], "pg_ctl start", log)
    pid = int((data / "postmaster.pid").read_text().split()[0])
    proc = Process("postgresql", pid, port, str(log))
    try:
        create_databases(port, databases)
    except Exception as e:
        stop_postgres(proc, data)
        raise UnavailableError(f"PostgreSQL: creating the databases {databases} failed: {e}") from None
    return proc


def create_databases(port: int, names: tuple[str, ...]) -> None:
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=10
    )
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in names:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def stop_postgres(proc: Process, data: Path) -> None:
    """`pg_ctl stop` (fast), then make sure the postmaster is gone."""
    if alive(proc.pid) and (data / "postmaster.pid").is_file():
        subprocess.run(  # noqa: S603 - pg_ctl by its full path, no shell
            _as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "stop", "-m", "fast", "-w", "-t", "60"]),
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 30
    while alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(proc.pid):
        os.kill(proc.pid, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
        time.sleep(1)
    if alive(proc.pid):
        raise UnavailableError(f"PostgreSQL (pid {proc.pid}) is still running after pg_ctl stop")


# The HTTP servers ---------------------------------------------------------------------------


def start_moto(log: Path, env: dict[str, str] | None = None) -> Process:
    """moto's standalone S3 server on a free port (state in memory only); call `wait_moto` before use."""
    port = free_port()
    argv = [venv_command("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    return spawn("moto", argv, log, port, env or dict(os.environ), log.parent)


def wait_moto(proc: Process, timeout_s: float = START_TIMEOUT_S) -> None:
    wait_http(proc, "/moto-api/", timeout_s)
