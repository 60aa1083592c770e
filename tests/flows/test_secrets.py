"""Credentials never written or printed: real releases through the CLI against a real MLflow server.

The credentials travel in ``--set register.tracking_uri``, in ``MLFLOW_TRACKING_URI`` and in a DVC
remote URL (whose push fails, so DVC's own error carries it). Each release runs as the user runs
it, ``python -m flows.cli run`` in a process of its own with Prefect's temporary API (its database
in the workspace), so that everything it prints is seen. Afterwards every byte under the repo,
the workspace and the MLflow server's store, with every DSSE payload decoded, is searched.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ExampleRepo
from tests.flows.api import wait_healthy

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "set": "set-0ver-ride-T0KEN",
    "env": "env-track1ng-T0KEN",
    "dvc": "dvc-rem0te-T0KEN",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real ``mlflow server`` on a free port (URL without credentials), and the folder of its store."""
    store = tmp_path / "mlflow-server"
    store.mkdir()
    port = _free_port()
    log = open(store / "server.log", "w")  # noqa: SIM115 - closed after the server stops
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination",
            (store / "artifacts").as_uri(),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{url}/health", store / "server.log", "mlflow server")
        yield url, store
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _cli(
    repo: ExampleRepo, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=repo.root,
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _with_credentials(url: str, user: str, secret: str) -> str:
    return url.replace("://", f"://{user}:{secret}@", 1)


def _texts(folder: Path, skip: set[Path]) -> Iterator[tuple[Path, bytes]]:
    """Every file's bytes, and for every JSON file holding DSSE envelopes, their decoded payloads."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p not in skip):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # SQLite's -shm/-wal files come and go with a closing connection
            continue
        yield path, data
        if path.suffix == ".json" and b'"payload"' in data:
            envelope = json.loads(data)
            for item in envelope if isinstance(envelope, list) else [envelope]:
                yield path, base64.b64decode(item["payload"])


def _leaks(folders: list[Path], outputs: list[str], skip: set[Path]) -> list[str]:
    found = []
    for name, secret in SECRETS.items():
        for folder in folders:
            found += [f"{name} in {p}" for p, data in _texts(folder, skip) if secret.encode() in data]
        found += [f"{name} in the console output" for out in outputs if secret in out]
    return found


def _flow_run_parameters(workspace: Path) -> list[dict[str, object]]:
    """The parameters of every flow run, as Prefect stored them in the workspace's database."""
    with sqlite3.connect(workspace / "prefect" / "prefect.db") as db:
        return [json.loads(row[0]) for row in db.execute("SELECT parameters FROM flow_run")]


@pytest.mark.slow
def test_no_credential_reaches_a_file_a_statement_a_run_parameter_or_the_console(
    example_repo: ExampleRepo, mlflow_server: tuple[str, Path]
) -> None:
    url, store = mlflow_server
    config = example_repo.write_config()
    outputs: list[str] = []

    # 1. Passes: the credential is an override, so it would be a Prefect run parameter.
    tracking = _with_credentials(url, "alice", SECRETS["set"])
    done = _cli(example_repo, "run", "--config", str(config), "--set", f"register.tracking_uri={tracking}")
    outputs += [done.stdout, done.stderr]
    assert done.returncode == 0, done.stderr[-3000:]

    # 2. Refused by a gate: the credential comes from the environment.
    strict = example_repo.write_policy(
        "strict.yaml", performance={"thresholds": [{"metric": "f1", "threshold": 0.999}]}
    )
    done = _cli(
        example_repo,
        "run",
        "--config",
        str(config),
        "--set",
        f"gates.policy={strict}",
        env={"MLFLOW_TRACKING_URI": _with_credentials(url, "bob", SECRETS["env"])},
    )
    outputs += [done.stdout, done.stderr]
    assert done.returncode == 1, done.stderr[-3000:]
    assert "release refused" in done.stderr

    # 3. Cannot run: the DVC remote (with credentials in its URL) refuses the push.
    remote = f"http://carol:{SECRETS['dvc']}@127.0.0.1:{_free_port()}/dvc"
    done = _cli(
        example_repo,
        "run",
        "--config",
        str(config),
        "--set",
        f"snapshot.remote_url={remote}",
        "--set",
        "snapshot.remote=secured",
        "--set",
        f"register.tracking_uri={tracking}",
    )
    outputs += [done.stdout, done.stderr]
    assert done.returncode == 3, done.stderr[-3000:]
    assert "could not run" in done.stderr
    assert "http://***@127.0.0.1" in done.stderr

    params = _flow_run_parameters(example_repo.workspace)
    masked = f"register.tracking_uri={url.replace('://', '://***@')}"
    assert any(masked in p["overrides"] for p in params)  # type: ignore[operator]
    signed_overrides = [
        json.loads(base64.b64decode(json.loads(p.read_text())["payload"]))["predicate"]["buildDefinition"][
            "externalParameters"
        ]["overrides"]
        for p in example_repo.workspace.glob("releases/tiny-credit/*/bundle/attestation/provenance.dsse.json")
    ]
    assert [masked] in signed_overrides, signed_overrides
    # DVC keeps a remote's credentials in the repo's git-ignored .dvc/config.local, by design.
    skip = {example_repo.root / ".dvc" / "config.local"}
    leaks = _leaks([example_repo.root, store], outputs, skip)
    assert not leaks, leaks
