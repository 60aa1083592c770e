"""The production topology on one machine, without Docker: `make stack-up` / `make stack-down`.

`up` starts, each on a free localhost port: a fresh PostgreSQL 15 cluster with the databases
``prefect`` and ``mlflow``; moto's S3 server with the bucket ``attestflow``; ``prefect server``
on PostgreSQL; and an MLflow tracking server on PostgreSQL that proxies artifacts to
``s3://attestflow/mlflow`` (clients need no S3 credentials for MLflow). Data and logs stay in
``<workspace>/stack/``; ``<workspace>/stack.env`` holds the exports a client needs, so that
``source .attestflow/stack.env && attestflow run`` releases on the stack; ``stack.json`` records
the processes, so that `down` stops every one of them and proves it.

The cluster is new at each `up`: moto keeps objects in memory only, so a registry that outlived
them would point at artifacts that are gone.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from attestflow.errors import UnavailableError
from attestflow.stack.services import (
    Process,
    alive,
    free_port,
    spawn,
    start_moto,
    start_postgres,
    stop_group,
    stop_postgres,
    venv_command,
    wait_http,
    wait_moto,
)

DEFAULT_WORKSPACE = Path(".attestflow")
BUCKET = "attestflow"
DATABASES = ("prefect", "mlflow")
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""moto accepts any credentials; these stand in for a real store's, and reach clients only by stack.env."""
ORDER = ("postgresql", "moto", "prefect", "mlflow")
"""Start order; stopped in reverse."""


@dataclass(frozen=True)
class Stack:
    """A started stack: its workspace and the servers it runs."""

    workspace: Path
    processes: tuple[Process, ...]

    @property
    def root(self) -> Path:
        return self.workspace / "stack"

    def process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def postgres_url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.process('postgresql').port}/{database}"

    @property
    def s3_url(self) -> str:
        return self.process("moto").url()

    @property
    def env(self) -> dict[str, str]:
        """What a client exports to release on the stack (the contract of issue 16)."""
        return {
            "PREFECT_API_URL": self.process("prefect").url("/api"),
            "MLFLOW_TRACKING_URI": self.process("mlflow").url(),
            **S3_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.s3_url,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_url,
            "ATTESTFLOW_DVC_REMOTE_URL": f"s3://{BUCKET}/dvc",
            "ATTESTFLOW_AUDIT_LOG": f"s3://{BUCKET}/audit/",
        }

    def running(self) -> dict[str, bool]:
        return {p.name: alive(p.pid) for p in self.processes}


def record_path(workspace: Path) -> Path:
    return workspace / "stack" / "stack.json"


def env_path(workspace: Path) -> Path:
    return workspace / "stack.env"


def load(workspace: Path = DEFAULT_WORKSPACE) -> Stack | None:
    """The stack recorded in `workspace`, whether or not its servers still run; None if none is."""
    try:
        raw = json.loads(record_path(workspace).read_text())
        return Stack(Path(raw["workspace"]), tuple(Process(**p) for p in raw["processes"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as e:
        raise UnavailableError(f"{record_path(workspace)} is not a stack record ({e}); remove it") from None


def _server_env(**extra: str) -> dict[str, str]:
    """This environment without any client setting that would point a server at another service."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "AWS_"))}
    return {**env, **extra}


def _save(stack: Stack) -> None:
    record = {"workspace": str(stack.workspace), "processes": [p.to_dict() for p in stack.processes]}
    record_path(stack.workspace).write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Written by `make stack-up` (attestflow.stack). `source` it to release on the stack.",
        f"# PostgreSQL: {stack.postgres_url('DATABASE')} (databases {', '.join(DATABASES)}; trust auth)",
        *(f"export {k}={shlex.quote(v)}" for k, v in stack.env.items()),
    ]
    env_path(stack.workspace).write_text("\n".join(lines) + "\n")


def _create_bucket(s3_url: str) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_url,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    )
    client.create_bucket(Bucket=BUCKET)


def _start_servers(root: Path, started: list[Process]) -> None:
    """Start every server, appending each to `started` as soon as it exists, and wait until all answer."""
    logs = root / "logs"
    s3_env = _server_env(**S3_CREDENTIALS)
    moto = start_moto(logs / "moto.log", s3_env)
    started.append(moto)
    pg = start_postgres(root / "postgres", logs / "postgresql.log", DATABASES)
    started.append(pg)
    pg_url = f"postgres@127.0.0.1:{pg.port}"

    port = free_port()
    (root / "prefect").mkdir(parents=True, exist_ok=True)
    prefect_env = _server_env(
        PREFECT_HOME=str(root / "prefect"),
        PREFECT_API_DATABASE_CONNECTION_URL=f"postgresql+asyncpg://{pg_url}/prefect",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api",
    )
    argv = [venv_command("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    prefect = spawn("prefect", argv, logs / "prefect.log", port, prefect_env, root / "prefect")
    started.append(prefect)

    port = free_port()
    (root / "mlflow").mkdir(parents=True, exist_ok=True)
    # No job runner: it starts eight more Python processes (huey consumers) for GenAI jobs attestflow never asks for.
    mlflow_env = _server_env(
        **s3_env,
        MLFLOW_S3_ENDPOINT_URL=moto.url(),
        AWS_ENDPOINT_URL=moto.url(),
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    argv = [
        venv_command("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"postgresql+psycopg2://{pg_url}/mlflow",
        "--artifacts-destination", f"s3://{BUCKET}/mlflow", "--serve-artifacts",
    ]  # fmt: skip
    mlflow = spawn("mlflow", argv, logs / "mlflow.log", port, mlflow_env, root / "mlflow")
    started.append(mlflow)

    wait_moto(moto)
    _create_bucket(moto.url())
    wait_http(prefect, "/api/health")
    wait_http(mlflow, "/health")


def _stop(processes: list[Process] | tuple[Process, ...], root: Path) -> list[str]:
    """Stop `processes` in reverse start order; the names of those that were running."""
    stopped = []
    for proc in sorted(processes, key=lambda p: ORDER.index(p.name), reverse=True):
        if not alive(proc.pid):
            continue
        if proc.name == "postgresql":
            stop_postgres(proc, root / "postgres")
        else:
            stop_group(proc)
        stopped.append(proc.name)
    return stopped


def up(workspace: Path = DEFAULT_WORKSPACE) -> tuple[Stack, bool]:
    """Start the stack (a fresh one), or find it running; returns it and whether it was already up.

    A server that does not start stops the others and raises `UnavailableError` with the end of its log.
    """
    workspace = workspace.resolve()
    found = load(workspace)
    if found is not None:
        if all(found.running().values()):
            return found, True
        down(workspace)
    root = workspace / "stack"
    root.mkdir(parents=True, exist_ok=True)
    started: list[Process] = []
    try:
        _start_servers(root, started)
    except BaseException:
        _stop(started, root)
        raise
    stack = Stack(workspace, tuple(started))
    _save(stack)
    return stack, False


def down(workspace: Path = DEFAULT_WORKSPACE) -> list[str]:
    """Stop every server of the stack recorded in `workspace` (none is fine); the names stopped."""
    workspace = workspace.resolve()
    found = load(workspace)
    if found is None:
        return []
    stopped = _stop(found.processes, found.root)
    record_path(workspace).unlink()
    env_path(workspace).unlink(missing_ok=True)
    return stopped
