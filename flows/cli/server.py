"""The `server` commands, and how `attestflow run` finds its Prefect API.

`api_for_run` points a run without ``PREFECT_API_URL`` at the workspace's background server
(`attestflow.local_server`), starting it the first time; `server start|stop|status` manage it
by hand. The server's home is the workspace's Prefect home (``$PREFECT_HOME`` when set), the
folder whose database the temporary API would have used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from flows.cli import render
from flows.cli.common import ConfigOpt, workspace_of

app = typer.Typer(
    no_args_is_help=True,
    help="The workspace's local Prefect server, which `attestflow run` starts once and reuses.",
)


@contextmanager
def api_for_run() -> Iterator[None]:
    """Flows run in the block talk to the workspace's background server, unless an API URL is configured."""
    from prefect.settings import get_current_settings, temporary_settings

    from attestflow.local_server import background_wanted, start

    settings = get_current_settings()
    if settings.api.url or not background_wanted():
        yield
        return
    server, started = start(Path(settings.home))
    if started:
        render.step(
            "prefect server", f"started at {server.url}; later runs reuse it (attestflow server stop)"
        )
    with temporary_settings(updates={"api.url": server.url}):
        yield


def _home(config: Path | None) -> Path:
    _, ws = workspace_of(config)
    ws.activate()
    return Path(os.environ["PREFECT_HOME"])


@app.command("start")
def start_server(config: ConfigOpt = None) -> None:
    """Start the workspace's Prefect server in the background (nothing to do if it runs)."""
    from attestflow.local_server import start

    server, started = start(_home(config))
    render.step("prefect server", f"{'started' if started else 'running'} at {server.url} (pid {server.pid})")


@app.command("stop")
def stop_server(config: ConfigOpt = None) -> None:
    """Stop the workspace's background Prefect server."""
    from attestflow.local_server import stop

    server = stop(_home(config))
    render.step("prefect server", f"stopped (pid {server.pid})" if server else "not running")


@app.command("status")
def server_status(config: ConfigOpt = None) -> None:
    """Say whether the workspace's background Prefect server runs, and where; exit 1 if not."""
    from attestflow.local_server import running

    server = running(_home(config))
    if server is None:
        render.step("prefect server", "not running")
        raise typer.Exit(1)
    render.step("prefect server", f"running at {server.url} (pid {server.pid})")
