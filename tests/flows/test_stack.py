"""The release on the stack of `make stack-up`, run as a user runs it, then verified from elsewhere.

`attestflow run` runs in its own process whose environment is the stack's exports and nothing
else about the stack: Prefect's server on PostgreSQL, MLflow's server on PostgreSQL proxying
artifacts to S3, the DVC remote on S3. What it left is read where it lives (boto3 on the
bucket, psycopg2 on the databases), and `attestflow verify` passes in a second, empty
workspace that holds only the public key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml

from attestflow.bundle import MODEL, PROVENANCE, SIGNATURE
from attestflow.stack import BUCKET, Stack
from tests.conftest import ROOT, ExampleRepo, make_example_repo

MODEL_NAME = "tiny-credit"


def client_env(stack: Stack) -> dict[str, str]:
    """This environment without any Prefect, MLflow, S3 or attestflow setting, plus the stack's exports."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MLFLOW_", "AWS_", "ATTESTFLOW_"))
    }
    return {**kept, "PYTHONPATH": str(ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **stack.env}


def attestflow_cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def query(stack: Stack, database: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of `sql` on one of the stack's PostgreSQL databases."""
    conn = psycopg2.connect(stack.postgres_url(database))
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def s3_client(stack: Stack) -> Any:
    """boto3 on the stack's S3 endpoint, with its credentials."""
    import boto3

    env = stack.env
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


@dataclass(frozen=True)
class StackRelease:
    stack: Stack
    repo: ExampleRepo
    run: subprocess.CompletedProcess[str]
    wall_s: float

    def query(self, database: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return query(self.stack, database, sql, *params)

    def version_tags(self) -> dict[str, str]:
        rows = self.query(
            "mlflow",
            "SELECT t.key, t.value FROM model_version_tags t JOIN registered_model_aliases a"
            " ON a.name = t.name AND a.version = t.version WHERE a.name = %s AND a.alias = 'champion'",
            MODEL_NAME,
        )
        return dict(rows)

    def keys(self, prefix: str) -> list[str]:
        s3 = self.s3()
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def s3(self) -> Any:
        return s3_client(self.stack)


@pytest.fixture(scope="module")
def on_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> StackRelease:
    repo = make_example_repo(tmp_path_factory.mktemp("on-stack") / "repo")
    config = repo.write_config()
    started = time.perf_counter()
    run = attestflow_cli(["run", "--config", str(config)], repo.root, client_env(stack))
    wall_s = time.perf_counter() - started
    print(f"release on the stack: {wall_s:.1f} s")
    return StackRelease(stack, repo, run, wall_s)


def test_a_release_on_the_stack_completes_and_its_flow_run_is_in_postgresql(on_stack: StackRelease) -> None:
    assert on_stack.run.returncode == 0, on_stack.run.stdout[-3000:] + on_stack.run.stderr[-3000:]
    runs = on_stack.query(
        "prefect",
        "SELECT r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id WHERE f.name = 'release'",
    )
    assert runs == [("COMPLETED",)]


def test_the_registry_is_in_postgresql_with_one_version_and_the_champion_on_it(
    on_stack: StackRelease,
) -> None:
    versions = on_stack.query("mlflow", "SELECT version FROM model_versions WHERE name = %s", MODEL_NAME)
    champion = on_stack.query(
        "mlflow",
        "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = 'champion'",
        MODEL_NAME,
    )
    assert len(versions) == 1
    assert champion == versions
    tags = on_stack.version_tags()
    assert tags["data_md5"] and tags["onnx_sha256"]


def test_model_and_attestation_are_in_s3_through_the_mlflow_server_and_nowhere_local(
    on_stack: StackRelease,
) -> None:
    keys = on_stack.keys("mlflow/")
    by_name = {name: [k for k in keys if k.endswith("/" + name)] for name in (MODEL, SIGNATURE, PROVENANCE)}
    assert all(by_name.values()), keys
    (onnx_key,) = by_name[MODEL]
    body = on_stack.s3().get_object(Bucket=BUCKET, Key=onnx_key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == on_stack.version_tags()["onnx_sha256"]
    experiments = on_stack.query("mlflow", "SELECT artifact_location FROM experiments WHERE name = 'tests'")
    assert [location.split(":", 1)[0] for (location,) in experiments] == ["mlflow-artifacts"]
    assert not any((on_stack.repo.workspace / "mlartifacts").rglob("*"))
    assert not (on_stack.repo.root / "mlruns").exists()


def test_the_data_is_pushed_to_the_s3_dvc_remote_that_the_stack_names(on_stack: StackRelease) -> None:
    """Needs the snapshot to read ``ATTESTFLOW_DVC_REMOTE_URL`` (engineer F's change)."""
    md5 = on_stack.version_tags()["data_md5"]
    key = f"dvc/files/md5/{md5[:2]}/{md5[2:]}"
    body = on_stack.s3().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert hashlib.md5(body).hexdigest() == md5
    assert not (on_stack.repo.workspace / "dvc-remote").exists()


def test_verify_passes_from_an_empty_workspace_with_only_the_stack_environment_and_the_public_key(
    on_stack: StackRelease, tmp_path: Path
) -> None:
    """Needs verify's data check on S3 (engineer F) and `verify` without a config file in the folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(on_stack.repo.workspace / "keys" / "signing-key.pub.pem", elsewhere / "release.pub.pem")
    verified = attestflow_cli(
        ["verify", f"models:/{MODEL_NAME}@champion", "--public-key", "release.pub.pem", "--json"],
        elsewhere,
        client_env(on_stack.stack),
    )
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
    checks = {c["name"]: c["ok"] for c in json.loads(verified.stdout)["checks"]}
    assert checks["data snapshot"] and checks["signature"] and checks["registry tags"]
    assert all(checks.values()), checks


def test_two_workers_with_separate_workspaces_release_one_model_at_once_into_one_audit_chain(
    stack: Stack, tmp_path: Path
) -> None:
    """Two `attestflow run` processes, each with its own repo and workspace, release one model at once
    with one audit log in S3 and one release key: the server's concurrency limit serialises their alias
    moves, so the chain holds both runs and each move starts from the champion the one before it set."""
    from attestflow.keys import ensure_keypair

    model = "shared-credit"
    keys = ensure_keypair(tmp_path / "shared-keys")  # the shared log's signed head needs one key
    env = {**client_env(stack), "ATTESTFLOW_AUDIT_LOG": f"s3://{BUCKET}/audit-two-workers/"}
    workers = []
    for i in range(2):
        repo = make_example_repo(tmp_path / f"worker-{i}")
        raw = repo.config_dict(
            fine_tune={"seed": i},  # two candidates, not one release run twice
            sign={
                "allow_dirty": True,
                "private_key": str(keys.private_key),
                "public_key": str(keys.public_key),
            },
        )
        raw["model_name"] = model
        config = repo.root / "release.yaml"
        config.write_text(yaml.safe_dump(raw))
        workers.append((repo, config))
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "run", "--config", str(config)],
            cwd=repo.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for repo, config in workers
    ]
    outputs = "\n".join(r.communicate(timeout=600)[0][-3000:] for r in runs)
    # A candidate that loses the regression gate to the other worker's fresh champion is refused (1).
    assert sorted(r.returncode for r in runs) in ([0, 0], [0, 1]), outputs

    verified = attestflow_cli(["audit", "verify", "--config", str(workers[0][1])], workers[0][0].root, env)
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
    body = s3_client(stack).get_object(Bucket=BUCKET, Key="audit-two-workers/audit.jsonl")["Body"].read()
    entries = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    assert len({e["details"]["flow_run_id"] for e in entries if e["event"] == "run_started"}) == 2
    moves = [e for e in entries if e["event"] == "promotion" and e["model"] == model]
    assert len(moves) == sum(r.returncode == 0 for r in runs), moves
    previous = None
    for move in moves:
        assert move["details"].get("previous") == previous, moves
        previous = move["version"]
    champion = query(
        stack,
        "mlflow",
        "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = 'champion'",
        model,
    )
    assert [str(v) for (v,) in champion] == [previous]


def test_a_release_triggered_with_prefect_deployment_run_is_executed_by_a_process_worker_on_the_stack(
    stack: Stack, tmp_path: Path
) -> None:
    """`prefect deploy --all` against the stack's server, `prefect deployment run release/on-demand`,
    one `prefect worker start --run-once`: the run completes, its data in the S3 DVC remote and its
    champion in the PostgreSQL registry."""
    from tests.flows import api

    model = "worker-credit"
    env = {**client_env(stack), "ATTESTFLOW_AUDIT_LOG": f"s3://{BUCKET}/audit-worker/"}
    prefect = str(Path(sys.executable).with_name("prefect"))

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    repo = make_example_repo(tmp_path / "repo")
    raw = repo.config_dict()
    raw["model_name"] = model
    config = repo.root / "release.yaml"
    config.write_text(yaml.safe_dump(raw))
    run(sys.executable, "-m", "deployments.deploy", "--repository", str(ROOT))
    out = run(
        prefect,
        "deployment",
        "run",
        "release/on-demand",
        "--params",
        json.dumps({"config_path": str(config)}),
    )
    run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
    run(prefect, "worker", "start", "--pool", "attestflow-local", "--run-once")

    state = api.get(f"{stack.env['PREFECT_API_URL']}/flow_runs/{run_id}")["state"]
    assert state["type"] == "COMPLETED", state
    champion = query(
        stack,
        "mlflow",
        "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = 'champion'",
        model,
    )
    assert champion == [(1,)]
    (md5,) = query(
        stack,
        "mlflow",
        "SELECT value FROM model_version_tags WHERE name = %s AND version = 1 AND key = 'data_md5'",
        model,
    )[0]
    body = s3_client(stack).get_object(Bucket=BUCKET, Key=f"dvc/files/md5/{md5[:2]}/{md5[2:]}")["Body"].read()
    assert hashlib.md5(body).hexdigest() == md5


def test_a_release_killed_on_the_stack_then_run_again_leaves_one_version_one_champion_and_an_intact_chain(
    stack: Stack, tmp_path: Path
) -> None:
    """SIGKILL (tests.flows.killpoints) with the version just created in the PostgreSQL registry, then
    with the champion moved but the canary not run; the run after that completes the same version."""
    from attestflow.registry import INCOMPLETE

    model = "crash-credit"
    repo = make_example_repo(tmp_path / "repo")
    raw = repo.config_dict()
    raw["model_name"] = model
    config = repo.root / "release.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {**client_env(stack), "ATTESTFLOW_AUDIT_LOG": f"s3://{BUCKET}/audit-crash/"}

    def release(kill_at: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tests.flows.killpoints", "run", "--config", str(config)],
            cwd=ROOT,
            env={**env, "ATTESTFLOW_TEST_KILL_AT": kill_at},
            capture_output=True,
            text=True,
            timeout=600,
        )

    def versions() -> list[tuple[Any, ...]]:
        return query(stack, "mlflow", "SELECT version FROM model_versions WHERE name = %s", model)

    for point in ("inside:register", "after:promote"):
        killed = release(point)
        assert killed.returncode == -9, killed.stdout[-3000:] + killed.stderr[-3000:]
        assert versions() == [(1,)], point
    done = release("")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert versions() == [(1,)]
    assert query(
        stack,
        "mlflow",
        "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = 'champion'",
        model,
    ) == [(1,)]
    marks = query(
        stack,
        "mlflow",
        "SELECT value FROM model_version_tags WHERE name = %s AND key = %s",
        model,
        INCOMPLETE,
    )
    assert marks == []
    verified = attestflow_cli(["audit", "verify", "--config", str(config)], repo.root, env)
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
