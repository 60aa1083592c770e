"""The gate suite as a whole: a real MLflow champion, reports, calibration and `attestflow evaluate`."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from rich.console import Console
from typer.testing import CliRunner

from attestflow.records import GateDecision
from attestflow.workspace import Workspace
from flows.cli import app
from tasks.gates import run_gates
from tasks.gates.calibrate import calibrate
from tasks.gates.report import artifact_key, metric_name
from tests.code.planted import PASSED_SUITE, ROOT, Lab, bundled_policy, export, ignoring_input, linear_onnx


def _register(uri: str, name: str, onnx_path: Path, tmp_path: Path, margins: dict[str, float]) -> str:
    """A model version whose files are `onnx_path` and whose run logged `margins`; returns its version."""
    c = MlflowClient(uri, uri)
    exp = c.get_experiment_by_name("gates") or c.get_experiment(
        c.create_experiment("gates", artifact_location=(tmp_path / "mlartifacts").as_uri())
    )
    run = c.create_run(exp.experiment_id)
    for key, value in margins.items():
        c.log_metric(run.info.run_id, key, value)
    if not c.search_registered_models(f"name='{name}'"):
        c.create_registered_model(name)
    source = tmp_path / f"source-{run.info.run_id}"
    source.mkdir()
    shutil.copy(onnx_path, source / "model.onnx")
    return str(c.create_model_version(name, source=source.as_uri(), run_id=run.info.run_id).version)


def test_the_suite_compares_with_the_registered_champion(lab: Lab, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    policy = bundled_policy()
    first = run_gates(
        policy,
        lab.good_onnx,
        lab.data,
        model_name="credit",
        tracking_uri=uri,
        checkpoint=lab.good_checkpoint,
        data_validation=PASSED_SUITE,
    )
    assert first.passed, first.failures()
    assert first.baseline is None and first.provider == "CPUExecutionProvider"
    assert {d.policy_digest for d in first.decisions} == {str(policy.digest())}

    version = _register(uri, "credit", lab.good_onnx, tmp_path, {})
    MlflowClient(uri, uri).set_registered_model_alias("credit", "champion", version)
    worse, _ = export(ignoring_input(lab.good), tmp_path / "worse", lab.data)
    report = run_gates(policy, worse, lab.data, model_name="credit", tracking_uri=uri)
    assert report.baseline == "models:/credit/1" and not report.passed
    refused = {line.split(":")[0] for line in report.failures()}
    assert {"gate performance", "gate regression", "gate fairness", "gate robustness"} <= refused


def test_an_unsigned_champion_is_not_trusted_as_a_baseline(lab: Lab, tmp_path: Path) -> None:
    from attestflow.keys import ensure_keypair

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    version = _register(uri, "credit", lab.good_onnx, tmp_path, {})
    MlflowClient(uri, uri).set_registered_model_alias("credit", "champion", version)
    key = ensure_keypair(tmp_path / "keys").public_key
    report = run_gates(
        bundled_policy(), lab.good_onnx, lab.data, model_name="credit", tracking_uri=uri, public_key=key
    )
    regression = [d for d in report.decisions if d.gate == "regression"]
    assert regression and not any(d.passed for d in regression)
    assert "failed verification" in regression[0].reason


@pytest.mark.usefixtures("wide_terminal")
def test_calibration_shows_which_gates_never_come_close(lab: Lab, tmp_path: Path) -> None:
    config = _config(lab, tmp_path)
    ws = Workspace.at(tmp_path / "ws")
    ws.root.mkdir(parents=True)
    for accuracy, p95 in ((0.04, 4.9), (0.01, 4.8), (-0.02, 4.95)):
        margins = {
            "gate_margin/performance/accuracy": accuracy,
            "gate_passed/performance/accuracy": float(accuracy >= 0),
            "gate_threshold/performance/accuracy": 0.8,
            "gate_margin/resources/latency_p95_ms_batch_1": p95,
            "gate_passed/resources/latency_p95_ms_batch_1": 1.0,
            "gate_threshold/resources/latency_p95_ms_batch_1": 5.0,
        }
        _register(ws.mlflow_uri, "credit", lab.good_onnx, tmp_path, margins)
    summaries = {s.metric: s for s in calibrate(ws.mlflow_uri, "credit")}
    acc, latency = summaries["accuracy"], summaries["latency_p95_ms_batch_1"]
    assert (acc.releases, acc.failed, acc.min, acc.median) == (3, 1, -0.02, 0.01)
    assert not acc.loose
    assert latency.never_failed and latency.min == 4.8 and latency.headroom == pytest.approx(0.96)
    assert latency.loose
    assert [s.releases for s in calibrate(ws.mlflow_uri, "credit", last=2)] == [2, 2]

    result = CliRunner().invoke(app, ["gates", "calibrate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "latency_p95_ms_batch_1" in result.output and "96%" in result.output
    assert result.output.count("loose: never came close") == 1


def test_margin_metric_and_artifact_names_are_valid_for_mlflow_and_prefect() -> None:
    d = GateDecision("robustness", "accuracy_drop_noise_0.1", 0.01, 0.05, 0.04, True, "ok", "sha256:x")
    assert metric_name(d) == "gate_margin/robustness/accuracy_drop_noise_0.1"
    assert artifact_key("Credit_Default.v2") == "gates-credit-default-v2"
    assert not math.isnan(d.margin)


@pytest.fixture
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's consoles as on a terminal wide enough that no table cell wraps."""
    from flows.cli import render

    monkeypatch.setattr(render, "console", Console(width=250))
    monkeypatch.setattr(render, "err", Console(width=250, stderr=True))


def _config(lab: Lab, tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
    raw.update(workspace=str(tmp_path / "ws"), model_name="credit")
    raw["data"]["path"] = str(lab.data.path)
    raw["validate_data"]["suite"] = str(ROOT / "configs/expectations/credit.yaml")
    raw["gates"]["policy"] = str(ROOT / "configs/gates.yaml")
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.usefixtures("wide_terminal")
def test_evaluate_exits_0_when_every_gate_passes(lab: Lab, tmp_path: Path) -> None:
    config = _config(lab, tmp_path)
    args = ["evaluate", str(lab.good_onnx), "--config", str(config), "--checkpoint", str(lab.good_checkpoint)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "gates: passed" in result.output and "worst_group_accuracy" in result.output
    assert Workspace.at(tmp_path / "ws").mlflow_db.is_file()


@pytest.mark.usefixtures("wide_terminal")
def test_evaluate_exits_1_with_one_reason_per_failing_gate(lab: Lab, tmp_path: Path) -> None:
    worse, _ = export(ignoring_input(lab.good), tmp_path / "worse", lab.data)
    result = CliRunner().invoke(app, ["evaluate", str(worse), "--config", str(_config(lab, tmp_path))])
    assert result.exit_code == 1, result.output
    assert "gates said no" in result.output
    assert "gate performance: accuracy" in result.output and "below the minimum 0.8" in result.output
    assert "no torch checkpoint of this model was given" in result.output


@pytest.mark.usefixtures("wide_terminal")
def test_evaluate_prints_runtime_errors_verbatim(lab: Lab, tmp_path: Path) -> None:
    three_features = linear_onnx(tmp_path / "model.onnx", np.ones((3, 2)), np.zeros(2))
    result = CliRunner().invoke(
        app, ["evaluate", str(three_features), "--config", str(_config(lab, tmp_path))]
    )
    assert result.exit_code == 1, result.output
    assert "[ONNXRuntimeError]" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["does/not/exist.onnx"], "does/not/exist.onnx: no such file"),
        (["models:/credit"], "not a model URI"),
        (["model.onnx", "--policy", "nope.yaml"], "gate policy not found: nope.yaml"),
        (["model.onnx", "--data", "nope.csv"], "data file not found: nope.csv"),
        (["model.onnx", "--checkpoint", "nope.safetensors"], "checkpoint not found: nope.safetensors"),
    ],
)
def test_evaluate_exits_2_on_bad_input(lab: Lab, tmp_path: Path, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["evaluate", *extra, "--config", str(_config(lab, tmp_path))])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
