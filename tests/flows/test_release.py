"""The release flow end to end on real Prefect, DVC, Great Expectations, MLflow and ONNX Runtime."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from attestflow.audit import AuditLog
from attestflow.errors import ConfigError, GateFailedError
from attestflow.outcomes import ReleaseSummary
from attestflow.policy import load_policy
from attestflow.tabular import load_checkpoint
from attestflow.tracking import fluent_uri
from attestflow.training.loop import Trainer
from attestflow.workspace import Workspace
from flows.cli import app
from flows.release import release
from tests.conftest import ExampleRepo


def _client(repo: ExampleRepo) -> MlflowClient:
    uri = Workspace.at(repo.workspace).mlflow_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _run(config: Path) -> ReleaseSummary:
    return release(config_path=str(config))


def _gate_table(flow_run_id: str) -> str:
    """The data of the gate table artifact that flow run `flow_run_id` published."""
    return _artifact("gates-tiny-credit", flow_run_id, "table")


def _artifact(key: str, flow_run_id: str, kind: str) -> str:
    """The data of the artifact `key` that flow run `flow_run_id` published.

    Posted to the API directly: Prefect 3.8.8's client sends filters its own server rejects (422).
    """
    from prefect.client.orchestration import get_client

    body = {"artifacts": {"key": {"any_": [key]}}, "flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 10}
    with get_client(sync_client=True) as client:
        found = client._client.post("/artifacts/filter", json=body).json()
    (artifact,) = found
    assert artifact["type"] == kind
    return str(artifact["data"])


def _release_dirs(repo: ExampleRepo) -> list[Path]:
    """The gates.json of every release of the tiny model."""
    return sorted((Workspace.at(repo.workspace).releases / "tiny-credit").glob("*/gates.json"))


def test_release_registers_tags_and_promotes_a_verified_onnx_model(example_repo: ExampleRepo) -> None:
    summary = _run(example_repo.write_config())
    client = _client(example_repo)

    version = client.get_model_version("tiny-credit", summary.registration.version)
    champion = client.get_model_version_by_alias("tiny-credit", "champion")
    assert str(champion.version) == str(version.version) == summary.registration.version

    tags = version.tags
    assert tags["data_md5"] == summary.snapshot.dvc_md5
    assert tags["onnx_sha256"] == summary.onnx.digest.value
    assert tags["config_sha256"] == example_repo.config().digest().value
    assert tags["prefect_flow_run_id"] == summary.flow_run_id
    assert tags["git_commit"]

    # DVC's md5 in the record is what DVC itself wrote for the data, and the md5 of its bytes.
    dvc_entry = yaml.safe_load((example_repo.data.parent / "credit.csv.dvc").read_text())["outs"][0]
    assert (
        summary.snapshot.dvc_md5
        == dvc_entry["md5"]
        == hashlib.md5(example_repo.data.read_bytes()).hexdigest()
    )

    # The registered ONNX is byte-for-byte the exported one, and agrees with torch in ONNX Runtime.
    import mlflow
    import onnxruntime as ort

    uri = Workspace.at(example_repo.workspace).mlflow_uri
    with fluent_uri(uri):
        local = Path(mlflow.artifacts.download_artifacts(f"models:/tiny-credit/{version.version}"))
    onnx_file = local / "model.onnx"
    assert hashlib.sha256(onnx_file.read_bytes()).hexdigest() == tags["onnx_sha256"]
    x = pd.read_csv(example_repo.data)[example_repo.config().data.features].to_numpy(np.float32)[:64]
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"features": x})[0]
    with torch.no_grad():
        want = load_checkpoint(summary.training.checkpoint_path).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)

    # The training run's per-epoch metrics are in MLflow.
    history = client.get_metric_history(summary.training.mlflow_run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    assert (summary.release_dir / "release.json").is_file()

    # Every gate decided, on the first release by the absolute gates, and left its record everywhere.
    policy = load_policy(example_repo.root / "gates.yaml")
    assert (
        summary.gates is not None
        and summary.gates.passed
        and tags["gate_policy_sha256"] == policy.digest().value
    )
    assert tags["gates_passed"] == "true"
    written = json.loads((summary.release_dir / "gates.json").read_text())
    assert written["model_digest"]["value"] == tags["onnx_sha256"] and written["baseline"] is None
    assert {d["gate"] for d in written["decisions"]} == set(policy.run)
    assert all(d["policy_digest"] == str(policy.digest()) for d in written["decisions"])
    run = client.get_run(summary.training.mlflow_run_id)
    assert "gate_margin/performance/accuracy" in run.data.metrics
    assert "gates.json" in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "worst_group_accuracy" in _gate_table(summary.flow_run_id)
    lineage = _artifact("lineage-tiny-credit", str(summary.flow_run_id), "markdown")
    for evidence in (summary.snapshot.dvc_md5, summary.onnx.digest.value, summary.training.mlflow_run_id):
        assert evidence in lineage
    assert "Release of tiny-credit: released" in lineage and "@champion -> v1" in lineage

    # The explain stage's attributions are in the signed bundle (verify holds), judged and on the run page.
    att = json.loads((local / "attestation" / "attributions.json").read_text())
    assert att["method"] == "integrated_gradients" and att["features"] == example_repo.config().data.features
    assert att["total"] > 0 and len(att["examples"]) == example_repo.config().explain.examples
    attributed = [d for d in written["decisions"] if d["gate"] == "attribution"]
    assert attributed and all(d["passed"] for d in attributed)
    assert "Attributions of tiny-credit" in _artifact(
        "attributions-tiny-credit", str(summary.flow_run_id), "markdown"
    )
    verified = CliRunner().invoke(
        app, ["verify", "models:/tiny-credit@champion", "--config", str(example_repo.write_config())]
    )
    assert verified.exit_code == 0, verified.output

    # The champion passes the gate suite run on its own, FGSM included (its checkpoint is found).
    result = CliRunner().invoke(
        app, ["evaluate", "models:/tiny-credit@champion", "--config", str(example_repo.write_config())]
    )
    assert result.exit_code == 0, result.output


def test_a_failing_gate_ends_the_flow_failed_and_leaves_the_alias(example_repo: ExampleRepo) -> None:
    first = _run(example_repo.write_config())
    strict = example_repo.write_policy(
        "strict-gates.yaml", performance={"thresholds": [{"metric": "accuracy", "threshold": 0.999}]}
    )
    config = example_repo.write_config("strict.yaml", gates={"policy": str(strict)}, fine_tune={"lr": 0.01})
    with pytest.raises(
        GateFailedError, match=r"gate performance: accuracy .* below the minimum 0.999"
    ) as refused:
        _run(config)
    gate_lines = [r for r in refused.value.reasons if r.startswith("gate ")]
    assert len(gate_lines) == 1, "only the impossible threshold fails"
    assert refused.value.reasons[-1] == "champion not moved"
    stops = [e for e in AuditLog.of(example_repo.workspace).entries() if e["event"].startswith("release_")]
    assert [e["event"] for e in stops] == ["release_completed", "release_refused"], "one entry per refusal"
    client = _client(example_repo)
    assert (
        str(client.get_model_version_by_alias("tiny-credit", "champion").version)
        == first.registration.version
    )
    versions = client.search_model_versions("name='tiny-credit'")
    assert len(versions) == 2
    second = next(v for v in versions if str(v.version) != first.registration.version)
    assert second.tags["gates_passed"] == "false"
    (gates_json,) = [p for p in _release_dirs(example_repo) if p.parent.name != first.flow_run_id]
    compared = json.loads(gates_json.read_text())
    assert compared["baseline"] == f"models:/tiny-credit/{first.registration.version}"
    change = next(d for d in compared["decisions"] if d["metric"] == "accuracy_change")
    assert change["ci"][0] <= change["value"] <= change["ci"][1] and change["baseline_value"] is not None


def test_a_first_release_that_needs_approval_with_nobody_to_approve_is_refused_before_it_starts(
    example_repo: ExampleRepo,
) -> None:
    policy = example_repo.write_policy(
        "approval.yaml", baseline={"alias": "champion", "first_release": "require_approval"}
    )
    with pytest.raises(ConfigError, match=r"first_release: require_approval needs approve\.approvers"):
        _run(example_repo.write_config(gates={"policy": str(policy)}))
    assert _client(example_repo).search_registered_models() == []
    assert _release_dirs(example_repo) == []


def test_corrupted_data_fails_validation_with_the_expectation_named(example_repo: ExampleRepo) -> None:
    df = pd.read_csv(example_repo.data)
    df.loc[0:4, "debt_ratio"] = 3.5
    df.to_csv(example_repo.data, index=False)
    with pytest.raises(GateFailedError, match=r"expect_column_values_to_be_between\(debt_ratio\)"):
        _run(example_repo.write_config())
    assert _client(example_repo).search_registered_models() == []
    (failed,) = [e for e in AuditLog.of(example_repo.workspace).entries() if e["event"] == "release_failed"]
    assert (failed["details"]["stage"], failed["details"]["exit_code"]) == ("validate_data", 1)
    assert "expect_column_values_to_be_between(debt_ratio)" in failed["details"]["reason"]


def test_a_training_crash_is_retried_and_resumes_from_the_checkpoint(
    example_repo: ExampleRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Trainer.run_epoch
    calls: list[int] = []

    def crash_in_epoch_2_once(self: Trainer, train_split: Any, epoch: int, first_batch: int) -> float:
        calls.append(epoch)
        if epoch == 2 and calls.count(2) == 1:
            raise RuntimeError("simulated worker loss during epoch 2")
        return real(self, train_split, epoch, first_batch)

    monkeypatch.setattr(Trainer, "run_epoch", crash_in_epoch_2_once)
    summary = _run(example_repo.write_config(fine_tune={"epochs": 3, "retries": 1, "retry_delay_s": 0}))
    assert calls == [1, 2, 2, 3]
    assert summary.training.resumed_from_epoch == 1
    assert len(summary.training.epoch_checkpoints) == 3
