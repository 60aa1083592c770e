"""Deployments on a real Prefect server, run by a real process worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, ExampleRepo
from tests.flows import api

BIN = Path(sys.executable).parent


def _env(api_url: str) -> dict[str, str]:
    env = {**os.environ, "PREFECT_API_URL": api_url, "ATTESTFLOW_ACTOR": "scheduler"}
    env.pop("PREFECT_HOME", None)
    return env


@pytest.fixture
def worker(prefect_server: str, tmp_path: Path) -> Iterator[str]:
    """A process worker on its own pool, polling the server every second."""
    pool = f"test-pool-{os.getpid()}"
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed after the worker stops
    env = {**_env(prefect_server), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    subprocess.run(
        [str(BIN / "prefect"), "work-pool", "create", pool, "--type", "process"],
        env=env,
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", pool],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        yield pool
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a busy worker may still be cleaning up its flow runs
            proc.kill()
            proc.wait()
        log.close()


def _run_deployment(api_url: str, name: str) -> str:
    out = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", name],
        env=_env(api_url),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return next(line.split()[-1] for line in out.splitlines() if "UUID" in line)


def _wait_final(api_url: str, run_id: str, timeout: float = 400) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get(f"{api_url}/flow_runs/{run_id}")
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return dict(run)
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish in {timeout} s")


def test_the_scheduled_retraining_runs_on_a_worker_and_then_skips_unchanged_data(
    example_repo: ExampleRepo, prefect_server: str, worker: str, tmp_path: Path
) -> None:
    spec = yaml.safe_load((ROOT / "configs/deployments.yaml").read_text())
    spec.update(release_config=str(example_repo.write_config()), work_pool=worker)
    spec["drift"]["current"] = str(example_repo.data)
    config = tmp_path / "deployments.yaml"
    config.write_text(yaml.safe_dump(spec))
    deployed = subprocess.run(
        [sys.executable, "-m", "deployments.deploy", "--config", str(config)],
        env=_env(prefect_server),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "deployed retrain/nightly" in deployed.stdout and "deployed retrain/on-drift" in deployed.stdout

    deployments = api.post(f"{prefect_server}/deployments/filter", {})
    nightly = next(d for d in deployments if d["name"] == "nightly")
    assert nightly["schedules"][0]["schedule"]["cron"] == spec["retrain"]["cron"]
    on_drift = next(d for d in deployments if d["name"] == "on-drift")
    assert on_drift["work_pool_name"] == worker

    first = _wait_final(prefect_server, _run_deployment(prefect_server, "retrain/nightly"))
    assert first["state"]["type"] == "COMPLETED", first["state"]
    assert first["state"]["name"] == "Completed"

    second = _wait_final(prefect_server, _run_deployment(prefect_server, "retrain/nightly"))
    assert second["state"]["type"] == "COMPLETED" and second["state"]["name"] == "Skipped", second["state"]
    assert "data unchanged" in second["state"]["message"]
    print(f"skipped scheduled run: {second['total_run_time']:.2f} s of flow run time")
    assert second["total_run_time"] < first["total_run_time"]
