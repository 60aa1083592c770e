"""Deployments the Prefect way: `prefect deploy --all` of prefect.yaml on a real server, run by process workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from attestflow.audit import AuditLog
from attestflow.registry import Registry
from attestflow.tracking import client as mlflow_client
from attestflow.workspace import Workspace
from deployments.pools import render_kubernetes_job
from tests.conftest import ROOT, ExampleRepo
from tests.flows import api

BIN = Path(sys.executable).parent
POOL = "attestflow-local"
PREFECT_YAML = yaml.safe_load((ROOT / "prefect.yaml").read_text())


def _env(api_url: str, actor: str = "scheduler") -> dict[str, str]:
    env = {**os.environ, "PREFECT_API_URL": api_url, "ATTESTFLOW_ACTOR": actor, "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_HOME", None)
    return env


def _spec(name: str) -> dict[str, Any]:
    return dict(next(d for d in PREFECT_YAML["deployments"] if d["name"] == name))


@pytest.fixture(scope="module")
def deployed(prefect_server: str) -> dict[str, dict[str, Any]]:
    """`python -m deployments.deploy` (pools, then `prefect deploy --all`) once; the deployments by name."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "deployments.deploy", "--repository", str(ROOT)],
        env=_env(prefect_server),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"deployed in {time.monotonic() - started:.1f} s")
    made = {line.removeprefix("deployed ") for line in done.stdout.splitlines()}
    assert made == {
        "release/on-demand",
        "retrain/nightly",
        "retrain/on-drift",
        "drift-monitor/scheduled",
        "drift-monitor/prod",
        "rollback-drill/weekly",
        "release/gpu",
        "env-promote/on-demand",
    }
    return {d["name"]: d for d in api.post(f"{prefect_server}/deployments/filter", {})}


@pytest.fixture
def worker(prefect_server: str, deployed: dict[str, Any], tmp_path: Path) -> Iterator[str]:
    """A process worker on the local pool, polling the server every second."""
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed after the worker stops
    env = {**_env(prefect_server), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", POOL],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield POOL
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a busy worker may still be cleaning up its flow runs
            proc.kill()
            proc.wait()
        log.close()


def _run_once(api_url: str, timeout: float = 300) -> float:
    """One `prefect worker start --run-once` on the local pool: it runs what is due, then exits; seconds taken."""
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--run-once"],
        env=_env(api_url),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return time.monotonic() - started


def _run_deployment(api_url: str, name: str, config: Path | None = None, **more: str) -> str:
    params = ["--params", json.dumps({"config_path": str(config), **more})] if config else []
    out = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", name, *params],
        env=_env(api_url),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return next(line.split()[-1] for line in out.splitlines() if "UUID" in line)


def _failure(api_url: str, run_id: str) -> str:
    """The run's state message and its last log lines, to say why it did not complete."""
    logs = api.post(
        f"{api_url}/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC"}
    )
    return (
        _state(api_url, run_id)["message"]
        + "\n"
        + "\n".join(str(log["message"])[-1500:] for log in logs[-8:])
    )


def _state(api_url: str, run_id: str) -> dict[str, Any]:
    return dict(api.get(f"{api_url}/flow_runs/{run_id}")["state"])


def _wait_final(api_url: str, run_id: str, timeout: float = 400) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get(f"{api_url}/flow_runs/{run_id}")
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return dict(run)
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish in {timeout} s")


def test_prefect_deploy_all_makes_every_deployment_with_its_schedule_trigger_and_pull_steps(
    prefect_server: str, deployed: dict[str, dict[str, Any]]
) -> None:
    monitor, nightly, prod = deployed["scheduled"], deployed["nightly"], deployed["prod"]
    for made, spec in ((monitor, _spec("scheduled")), (nightly, _spec("nightly")), (prod, _spec("prod"))):
        (schedule,) = made["schedules"]
        assert schedule["active"] and not made["paused"]
        assert schedule["schedule"]["cron"] == spec["schedules"][0]["cron"]
        assert schedule["schedule"]["timezone"] == spec["schedules"][0]["timezone"]
    assert monitor["parameters"]["current"] == "data/credit.csv"
    assert prod["parameters"]["environment"] == "prod"  # prod's monitor watches prod's champion

    automations = api.post(f"{prefect_server}/automations/filter", {})
    (drift,) = [a for a in automations if a["actions"][0].get("deployment_id") == deployed["on-drift"]["id"]]
    assert drift["trigger"]["expect"] == ["attestflow.drift.detected"] and drift["enabled"]

    local = {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
    for name in ("on-demand", "nightly", "on-drift", "scheduled"):
        assert deployed[name]["work_pool_name"] == POOL and deployed[name]["pull_steps"] == [local]
    gpu = deployed["gpu"]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    clone = gpu["pull_steps"][0]["prefect.deployments.steps.git_clone"]
    assert clone["commit_sha"] == commit  # pinned when deployed
    assert (
        clone["repository"] == "{{ prefect.variables.attestflow_repository }}"
    )  # read when a worker runs it
    assert str(ROOT) not in (ROOT / "prefect.yaml").read_text()

    pools = {p["name"]: p for p in api.post(f"{prefect_server}/work_pools/filter", {})}
    template = json.loads((ROOT / "deployments/k8s-gpu-base-job-template.json").read_text())
    assert pools["attestflow-k8s-gpu"]["type"] == "kubernetes"
    assert pools["attestflow-k8s-gpu"]["base_job_template"] == template
    assert pools[POOL]["type"] == "process"


def test_the_gpu_deployment_renders_to_a_kubernetes_job_with_its_image_gpus_volume_and_command(
    prefect_server: str, deployed: dict[str, dict[str, Any]]
) -> None:
    gpu = deployed["gpu"]
    pool = api.get(f"{prefect_server}/work_pools/{gpu['work_pool_name']}")
    job = render_kubernetes_job(
        pool["base_job_template"], {**gpu["job_variables"], "image": "registry.example/attestflow:cuda"}
    )
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert job["kind"] == "Job" and job["spec"]["backoffLimit"] == 0
    assert container["image"] == "registry.example/attestflow:cuda"
    assert (
        container["resources"]["limits"]["nvidia.com/gpu"]
        == 1
        == container["resources"]["requests"]["nvidia.com/gpu"]
    )
    assert "fine_tune.processes=1" in gpu["parameters"]["overrides"]  # one DDP process per requested GPU
    assert container["args"] == ["prefect", "flow-run", "execute"]
    assert {"name": "PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR", "value": "reschedule"} in container["env"]
    assert container["envFrom"] == [{"secretRef": {"name": "attestflow-stack"}}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["workspace"]["persistentVolumeClaim"]["claimName"] == "attestflow-workspace"
    assert {"name": "workspace", "mountPath": "/workspace"} in container["volumeMounts"]
    assert "workspace=/workspace" in gpu["parameters"]["overrides"]
    assert "approve.wait=suspend" in gpu["parameters"]["overrides"]


def test_the_git_pull_steps_clone_the_deployed_commit_from_the_repository_variable(
    prefect_server: str, deployed: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    script = (
        "import asyncio, json, os, sys\n"
        "from prefect.deployments.steps.core import run_steps\n"
        "out = asyncio.run(run_steps(json.loads(sys.argv[1])))\n"
        "print(os.getcwd())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(deployed["gpu"]["pull_steps"])],
        env=_env(prefect_server),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    code_dir = Path(done.stdout.strip().splitlines()[-1])
    assert code_dir.is_relative_to(tmp_path) and (code_dir / "prefect.yaml").is_file()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=code_dir, capture_output=True, text=True).stdout
    clone = deployed["gpu"]["pull_steps"][0]["prefect.deployments.steps.git_clone"]
    assert head.strip() == clone["commit_sha"]


def test_a_release_run_with_prefect_deployment_run_is_executed_by_a_process_worker(
    example_repo: ExampleRepo, prefect_server: str, deployed: dict[str, Any]
) -> None:
    config = example_repo.write_config()
    run_id = _run_deployment(prefect_server, "release/on-demand", config)
    took = _run_once(prefect_server)
    run = _wait_final(prefect_server, run_id, timeout=30)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    ws = Workspace.at(example_repo.workspace)
    assert Registry(ws.mlflow_uri).alias_version("tiny-credit", "champion") == "1"
    print(
        f"release through a --run-once worker: {took:.1f} s, {run['total_run_time']:.1f} s of flow run time"
    )


def test_a_suspended_release_frees_its_worker_then_resumes_on_another_without_redoing_its_stages(
    example_repo: ExampleRepo, prefect_server: str, deployed: dict[str, Any]
) -> None:
    approve = {"mode": "human", "wait": "suspend", "timeout_s": 600, "approvers": ["alice"]}
    config = example_repo.write_config(approve=approve)
    run_id = _run_deployment(prefect_server, "release/on-demand", config)
    _run_once(prefect_server)  # returns: the suspended run's process ended, and the worker with it
    state = _state(prefect_server, run_id)
    assert (state["type"], state["name"]) == ("PAUSED", "Suspended"), state
    ws = Workspace.at(example_repo.workspace)
    audit = AuditLog.of(ws.root)
    digest = next(e for e in audit.entries() if e["event"] == "registration")["details"]["bundle_sha256"]
    approve_cmd = ["approve", run_id, "--digest", digest, "--reason", "checked", "--approver", "alice"]
    decide = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *approve_cmd, "--wait", "300"],
        env=_env(prefect_server, "alice"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _state(prefect_server, run_id)["type"] == "PAUSED" and time.monotonic() < deadline:
            time.sleep(1)
        assert _state(prefect_server, run_id)["type"] == "SCHEDULED"  # resumed: waiting for a worker
        resumed = _run_once(prefect_server)
        run = _wait_final(prefect_server, run_id, timeout=30)
        assert run["state"]["type"] == "COMPLETED", _failure(prefect_server, run_id)
        out, _ = decide.communicate(timeout=60)
    finally:
        decide.kill()
    assert decide.returncode == 0, out
    states = api.get(f"{prefect_server}/flow_run_states/?flow_run_id={run_id}")
    names = [s["name"] for s in sorted(states, key=lambda s: s["timestamp"])]
    assert names.count("Running") == 2 and "Suspended" in names  # one execution to the suspension, one after

    registry = Registry(ws.mlflow_uri)
    assert registry.alias_version("tiny-credit", "champion") == "1"
    versions = mlflow_client(ws.mlflow_uri).search_model_versions("name='tiny-credit'")
    assert [str(v.version) for v in versions] == ["1"]  # registered once, not again when resumed
    training_runs = mlflow_client(ws.mlflow_uri).search_runs(
        [e.experiment_id for e in mlflow_client(ws.mlflow_uri).search_experiments()]
    )
    assert len(training_runs) == 1  # trained once
    approvals = [e for e in audit.entries() if e["event"] == "approval"]
    assert [a["actor"] for a in approvals] == ["user:alice"]
    body = {"flow_runs": {"id": {"any_": [run_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
    tasks = api.post(f"{prefect_server}/task_runs/filter", body)
    print(f"resumed execution: {resumed:.1f} s;", [(t["name"], t["state"]["name"]) for t in tasks])


def test_the_scheduled_retraining_runs_on_a_worker_and_then_skips_unchanged_data(
    example_repo: ExampleRepo, prefect_server: str, worker: str
) -> None:
    config = example_repo.write_config()
    envs = str(example_repo.write_environments())  # the deployment releases into its `staging`
    run = _run_deployment(prefect_server, "retrain/nightly", config, environments_path=envs)
    first = _wait_final(prefect_server, run)
    assert first["state"]["type"] == "COMPLETED", first["state"]
    assert first["state"]["name"] == "Completed"
    assert "env:staging" in first["tags"] and first["name"].startswith("staging-")
    staging = Registry(Workspace.at(example_repo.workspace).mlflow_uri)
    assert staging.alias_version("tiny-credit-staging", "champion") == "1"

    second = _wait_final(
        prefect_server, _run_deployment(prefect_server, "retrain/nightly", config, environments_path=envs)
    )
    assert second["state"]["type"] == "COMPLETED" and second["state"]["name"] == "Skipped", second["state"]
    assert "data unchanged" in second["state"]["message"]
    print(f"skipped scheduled run: {second['total_run_time']:.2f} s of flow run time")
    assert second["total_run_time"] < first["total_run_time"]
