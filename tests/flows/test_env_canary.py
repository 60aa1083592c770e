"""A planted worse model passes staging's gates and prod's re-run gates, and prod's labelled canary rolls it back.

Staging's second snapshot has `late_payments` encoded backwards (an upstream bug): the model
trained on it scores well on staging's held-out rows, which carry the same bug, and better than
staging's champion there, so staging releases it. Prod's gates in this test are the absolute
floor only (no regression gate against prod's champion, approval automatic to keep it short), so
only the canary, comparing it with prod's champion on prod's recent labelled rows, can see it.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from mlflow.tracking import MlflowClient
from prefect.states import State

from attestflow.audit import AuditLog
from attestflow.dsse import dsse_verify
from attestflow.keys import KeyPair, ensure_keypair, load_public_key
from attestflow.tracking import fluent_uri
from attestflow.workspace import Workspace
from tasks.generate_data import generate
from tests.conftest import ExampleRepo
from tests.flows import api
from tests.flows.test_env_promote import _environments, _run

FLOOR = {
    "run": ["performance"],
    "performance": {
        "thresholds": [
            {"metric": "accuracy", "threshold": 0.6},
            {"metric": "f1", "threshold": 0.6},
            {"metric": "roc_auc", "threshold": 0.6},
        ]
    },
}


def _prod_with_labelled_canary(repo: ExampleRepo, staging: KeyPair, prod: KeyPair) -> Path:
    """test_env_promote's environments, prod with the floor policy, auto approval and the labelled canary."""
    path = _environments(repo, staging, ("pkcs11:token=unused;object=unused", prod.public_key))
    raw: dict[str, Any] = yaml.safe_load(path.read_text())
    target = raw["environments"]["prod"]
    target["key"] = {
        "private_key": str(prod.private_key),
        "public_key": str(prod.public_key),
    }  # a file key here
    recent = target["gates"]["data"]
    target["approve"] = {"mode": "auto"}
    target["gates"]["policy"] = str(repo.write_policy("gates-prod-floor.yaml", **FLOOR))
    target["canary"] = {"sample": recent, "quality": True}
    path.write_text(yaml.safe_dump(raw))
    return path


def _backwards_late_payments(repo: ExampleRepo) -> Path:
    table = generate(1000, seed=3)
    late = table["late_payments"]
    table["late_payments"] = late.max() + late.min() - late
    path = repo.data.with_name("credit-late-backwards.csv")
    table.to_csv(path, index=False)
    return path


def _statements(uri: str, model_uri: str, kind: str) -> list[Path]:
    import mlflow

    tmp = Path(tempfile.mkdtemp(prefix="env-canary-"))
    with fluent_uri(uri):
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp)))
    return sorted(local.glob(f"{kind}-*.dsse.json"))


def _monitor(api_url: str, config: Path, environments: Path, current: Path) -> State[Any]:
    """Prod's drift monitor's final state, run against the real server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.drift import monitor_drift

    with temporary_settings({PREFECT_API_URL: api_url}):
        return monitor_drift(
            current=str(current),
            config_path=str(config),
            environment="prod",
            environments_path=str(environments),
            return_state=True,
        )


def test_a_planted_worse_model_passes_staging_gates_but_fails_prods_labelled_canary_and_is_rolled_back(
    example_repo: ExampleRepo, prefect_server: str
) -> None:
    started = time.monotonic()
    staging = ensure_keypair(example_repo.root / "envs" / "staging" / "keys")
    prod = ensure_keypair(example_repo.root / "envs" / "prod" / "keys")
    environments = _prod_with_labelled_canary(example_repo, staging, prod)
    config = example_repo.write_config()
    into_staging = ["run", "--config", str(config), "--env", "staging", "--environments", str(environments)]
    promote = [
        "promote",
        "models:/tiny-credit@champion",
        "--to",
        "prod",
        "--environments",
        str(environments),
        "--config",
        str(config),
        "--reason",
        "monthly model",
    ]

    for step in (into_staging, promote):
        done = _run(prefect_server, "scheduler", *step)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        print(f"{step[0]}: done at {time.monotonic() - started:.1f} s")
    planted = _run(
        prefect_server,
        "scheduler",
        *into_staging,
        "--set",
        f"data.path={_backwards_late_payments(example_repo)}",
    )
    assert planted.returncode == 0, planted.stdout[-3000:] + planted.stderr[-3000:]
    print(f"planted staging v2: done at {time.monotonic() - started:.1f} s")
    uri = Workspace.at(example_repo.workspace).mlflow_uri
    client = MlflowClient(uri, uri)
    assert str(client.get_model_version_by_alias("tiny-credit", "champion").version) == "2"

    refused = _run(prefect_server, "scheduler", *promote)
    assert refused.returncode == 1, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert "quality on labelled rows: roc_auc vs models:/tiny-credit-prod/1" in refused.stderr, refused.stderr
    assert "champion rolled back to v1" in refused.stderr, refused.stderr
    assert str(client.get_model_version_by_alias("tiny-credit-prod", "champion").version) == "1"

    (verdict,) = _statements(uri, "models:/tiny-credit-prod/2/environments/prod", "canary")
    stmt = dsse_verify(json.loads(verdict.read_text()), load_public_key(prod.public_key))
    assert stmt["predicate"]["result"] == "FAILED" and stmt["predicate"]["previous"] == "1"
    assert any("roc_auc" in r and "upper bound is a drop" in r for r in stmt["predicate"]["reasons"]), stmt

    prod_audit = AuditLog.of(
        example_repo.workspace, prod.private_key, prod.public_key, str(example_repo.root / "envs/prod/audit")
    )
    log = prod_audit.entries()
    second = log[max(i for i, e in enumerate(log) if e["event"] == "env_promotion_started") :]
    events = [e["event"] for e in second]
    for event in (
        "gate",
        "approval",
        "copied",
        "promotion",
        "canary_rollback",
        "canary",
        "env_promotion_refused",
    ):
        assert event in events, events
    rollback = next(e for e in second if e["event"] == "canary_rollback")
    assert rollback["version"] == "1" and rollback["details"]["previous"] == "2"
    canary = next(e for e in second if e["event"] == "canary")
    assert canary["version"] == "2" and canary["details"]["passed"] is False
    assert "quality on labelled rows: roc_auc" in canary["details"]["reason"][0]
    assert second[-1]["event"] == "env_promotion_refused" and second[-1]["details"]["step"] == "promotion"
    assert prod_audit.verify()[0]
    print(f"two releases and two promotions: {time.monotonic() - started:.1f} s")

    # Prod's drift monitor watches prod's champion (v1, promoted: it verifies only with prod's trust).
    monitored = _monitor(prefect_server, config, environments, example_repo.data)
    assert monitored.is_completed() and monitored.name == "Completed", monitored
    runs = api.post(f"{prefect_server}/flow_runs/filter", {})
    (drift,) = [r for r in runs if "env:prod" in r["tags"] and r["name"].startswith("prod-")]
    assert drift["state_type"] == "COMPLETED"
    dev = ensure_keypair(example_repo.root / "envs" / "dev" / "keys")
    raw = yaml.safe_load(environments.read_text())
    raw["environments"]["prod"]["trusts"] = [str(dev.public_key)]
    untrusting = environments.with_name("environments-untrusting.yaml")
    untrusting.write_text(yaml.safe_dump(raw))
    refused_state = _monitor(prefect_server, config, untrusting, example_repo.data)
    assert refused_state.is_failed(), refused_state
    assert "models:/tiny-credit-prod/1 does not verify" in str(refused_state.message), refused_state.message
    print(f"and prod's drift monitor twice: {time.monotonic() - started:.1f} s")
