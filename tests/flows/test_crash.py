"""Crash consistency: `attestflow run` killed with SIGKILL, then run again, on the embedded default.

The release runs as a real process (`tests.flows.killpoints`, the CLI with a test-only kill
point) against a real `prefect server`; a kill is SIGKILL, so no handler, `finally` or
rollback hook runs. Whatever point it dies at, the next run leaves one model version for the
release, the champion on it, no version marked incomplete, and an audit chain that verifies.
The training stage's own SIGKILL resume is tested in tests/code/test_fine_tune_processes.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from attestflow.audit import AuditLog
from attestflow.registry import INCOMPLETE
from attestflow.workspace import Workspace
from tests.conftest import ROOT, ExampleRepo
from tests.flows.api import wait_healthy

MODEL = "tiny-credit"


def release_process(repo: ExampleRepo, api_url: str, kill_at: str = "", **env: str) -> subprocess.Popen[str]:
    """`attestflow run` on the tiny example in a child process, to be killed at `kill_at` (never when empty)."""
    config = repo.write_config(register={"retries": 5, "retry_delay_s": 5})
    child_env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PYTHONPATH": str(ROOT),
        "ATTESTFLOW_TEST_KILL_AT": kill_at,
        **env,
    }
    child_env.pop("PREFECT_HOME", None)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.flows.killpoints", "run", "--config", str(config)],
        cwd=ROOT,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    """(exit status, output) of a release process."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(
            f"the release still ran after {timeout} s: {proc.communicate()[0][-3000:]}"
        ) from None
    return proc.returncode, out


def registry_of(repo: ExampleRepo, uri: str | None = None) -> MlflowClient:
    uri = uri or Workspace.at(repo.workspace).mlflow_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def assert_one_complete_champion(repo: ExampleRepo, client: MlflowClient) -> None:
    """One version of the model, the champion, not marked incomplete; the audit chain intact."""
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert [str(v.version) for v in versions] == ["1"], [(v.version, v.tags) for v in versions]
    (version,) = versions
    assert INCOMPLETE not in version.tags
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    audit = AuditLog.of(repo.workspace)
    ok, line, reason = audit.verify()
    assert ok, (line, reason)
    moves = [e for e in audit.entries() if e["event"] == "promotion"]
    assert moves and all(e["version"] == "1" for e in moves)


KILLED_IN_TURN = ["inside:register", "after:register", "after:gates", "after:attest", "after:promote"]
"""Where the release dies, one run after another: with the version just created (nothing after it
ran: no record, no audit entry, no evidence), after registration, after the gates (no verdict
attached yet), after the signed verdict, and with the champion moved but the canary not run (its
transaction never committed, its rollback hook never called). Each kill and run again costs ~20 s
here, so the stages before registration (whose outputs are files in the release folder and the
stage cache, rebuilt by the next run) are left out."""
UNTIL_ATTESTED = ("inside:register", "after:register", "after:gates")
"""The kill points at which the version still carries its incomplete mark (attest removes it)."""


def test_a_release_killed_inside_registration_then_after_promotion_completes_with_one_version(
    example_repo: ExampleRepo, prefect_server: str
) -> None:
    client = registry_of(example_repo)
    timings = []
    for point in KILLED_IN_TURN:
        started = time.monotonic()
        code, out = finished(release_process(example_repo, prefect_server, point))
        timings.append(f"{point}: {time.monotonic() - started:.0f} s")
        assert code == -signal.SIGKILL, out[-3000:]
        (left,) = client.search_model_versions(f"name = '{MODEL}'")
        if point == "inside:register":  # created with every tag, marked incomplete, nothing audited yet
            assert left.tags[INCOMPLETE].startswith("no gate verdict attached yet")
            assert {"release_key", "onnx_sha256", "bundle_sha256", "data_md5"} <= set(left.tags)
            assert not [
                e for e in AuditLog.of(example_repo.workspace).entries() if e["event"] == "registration"
            ]
        assert (INCOMPLETE in left.tags) == (point in UNTIL_ATTESTED), (point, left.tags)
    registered = client.get_model_version(MODEL, "1")
    started = time.monotonic()
    code, out = finished(release_process(example_repo, prefect_server))
    timings.append(f"completed: {time.monotonic() - started:.0f} s")
    print("; ".join(timings))
    assert code == 0, out[-3000:]
    assert_one_complete_champion(example_repo, client)
    assert registered.tags["release_key"] == client.get_model_version(MODEL, "1").tags["release_key"]
    registrations = [e for e in AuditLog.of(example_repo.workspace).entries() if e["event"] == "registration"]
    assert all(e["details"]["reused"] for e in registrations)
    # Runs that found the verdict not yet attached resume the version; once attested, the rest reuse it.
    resumed = [bool(e["details"].get("resumed_incomplete")) for e in registrations]
    assert resumed[0] and not resumed[-1] and resumed == sorted(resumed, reverse=True), resumed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """A real `mlflow server` on SQLite with proxied local artifacts, on a fixed port: killed and started again."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "mlflow-server.log"

    def start(self) -> None:
        """Start the server and wait until it answers."""
        self.launch()
        self.wait()

    def launch(self) -> None:
        """Start the server without waiting for it."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("mlflow")),
                    "server",
                    "--backend-store-uri",
                    f"sqlite:///{self.root}/mlflow.db",
                    "--artifacts-destination",
                    str(self.root / "artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its uvicorn worker dies with it
            )

    def wait(self) -> None:
        wait_healthy(f"{self.url}/health", self.log, "mlflow server")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def _wait_paused(child: subprocess.Popen[str], flag: Path, point: str) -> None:
    deadline = time.monotonic() + 240
    while not (flag.exists() and flag.read_text() == point):
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()[0][-3000:]
        time.sleep(0.2)


def _outage(server: MlflowServer, flag: Path) -> None:
    """Kill the server, let the paused release go on, start the server again on the same port and store."""
    server.kill()
    flag.unlink()
    time.sleep(1)
    server.start()


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    """An MLflow server launched before the example repo is built (it takes ~20 s to start here)."""
    server = MlflowServer(tmp_path, _free_port())
    server.launch()
    try:
        yield server
    finally:
        server.kill()


def test_the_mlflow_server_killed_in_training_and_again_as_registration_starts_leaves_one_released_version(
    mlflow_server: MlflowServer, example_repo: ExampleRepo, prefect_server: str, tmp_path: Path
) -> None:
    server = mlflow_server
    server.wait()
    flag = tmp_path / "paused"
    child = release_process(
        example_repo,
        prefect_server,
        MLFLOW_TRACKING_URI=server.url,
        ATTESTFLOW_TEST_PAUSE_AT="epoch:2,before:register",
        ATTESTFLOW_TEST_PAUSE_FILE=str(flag),
    )
    try:
        _wait_paused(child, flag, "epoch:2")
        _outage(server, flag)  # epoch 2's metrics are sent while the server is down: MLflow's client waits
        _wait_paused(child, flag, "before:register")
        _outage(server, flag)  # registration fails fast while it is down: the register stage is retried
    finally:
        if child.poll() is None and flag.exists():
            child.kill()
    code, out = finished(child)
    assert code == 0, out[-3000:]
    assert "Task run 'register" in out and "RegistryUnavailableError" in out and "Retry 1/5" in out
    client = registry_of(example_repo, server.url)
    assert_one_complete_champion(example_repo, client)
    run_id = str(client.get_model_version(MODEL, "1").run_id)
    assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == [1, 2]
