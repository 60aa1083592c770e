"""A newcomer's two commands on tables the project did not generate: `attestflow init`, then `attestflow run`.

scikit-learn's bundled breast-cancer (binary) and wine (three classes) tables are written to
CSV in a fresh DVC repository, and the CLI is run as a user would, in that folder, against a
real Prefect server. No file that init wrote is edited by hand. `sign.allow_dirty` is set
because the tests run from a work tree with uncommitted changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attestflow import dataset
from attestflow.tracking import fluent_uri
from attestflow.workspace import Workspace
from tests.conftest import ROOT

TIMEOUT_S = 600


def _cli(project: Path, api_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`attestflow ARGS` from this checkout, run in `project` as a user would."""
    env = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(ROOT), "ATTESTFLOW_ACTOR": "newcomer"}
    env.pop("PREFECT_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def _project(tmp_path: Path, df: pd.DataFrame, name: str) -> Path:
    """A DVC repository (no git) holding `df` as data/NAME.csv."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True, capture_output=True
    )
    df.to_csv(root / "data" / f"{name}.csv", index=False)
    return root


def _init(root: Path, api_url: str, name: str, *extra: str) -> None:
    done = _cli(root, api_url, "init", "--data", f"data/{name}.csv", "--label", "target", *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"next: attestflow run --config configs/{name}.yaml" in done.stdout


def _run(root: Path, api_url: str, name: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = _cli(
        root, api_url, "run", "--config", f"configs/{name}.yaml", "--set", "sign.allow_dirty=true", *extra
    )
    return done, time.perf_counter() - started


def _released(root: Path, api_url: str, name: str, *init_args: str) -> str:
    """Init and run to a champion; returns the run's output."""
    started = time.perf_counter()
    _init(root, api_url, name, *init_args)
    done, run_s = _run(root, api_url, name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "@champion -> v1" in done.stdout, done.stdout
    print(f"{name}: init + run took {time.perf_counter() - started:.1f} s (run {run_s:.1f} s)")
    return done.stdout


def _champion_onnx(root: Path, name: str) -> Path:
    """The champion's ONNX file, as the registry serves it."""
    import mlflow

    with fluent_uri(Workspace.at(root / ".attestflow").mlflow_uri):
        folder = Path(mlflow.artifacts.download_artifacts(f"models:/{name}@champion"))
    return folder / "model.onnx"


def _held_out(df: pd.DataFrame) -> pd.DataFrame:
    return df[dataset.test_mask(len(df), 0.2, 0)]


def _gate_metrics(root: Path, name: str, gate: str) -> set[str]:
    import json

    (gates,) = (root / ".attestflow" / "releases" / name).glob("*/gates.json")
    decisions = json.loads(gates.read_text())["decisions"]
    return {d["metric"] for d in decisions if d["gate"] == gate}


def _breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame


def test_a_binary_table_goes_from_two_commands_to_a_verified_champion(
    tmp_path: Path, prefect_server: str
) -> None:
    root = _project(tmp_path, _breast_cancer(), "breast_cancer")
    _released(root, prefect_server, "breast_cancer")
    (summary,) = (root / ".attestflow" / "releases" / "breast_cancer").glob("*/release.json")
    assert "trained from scratch" in summary.read_text()  # no base checkpoint: the record says so

    verified = _cli(
        root,
        prefect_server,
        "verify",
        "models:/breast_cancer@champion",
        "--config",
        "configs/breast_cancer.yaml",
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert _gate_metrics(root, "breast_cancer", "performance") == {"accuracy", "f1", "roc_auc"}


def test_a_three_class_table_releases_a_three_class_model_judged_on_multiclass_metrics(
    tmp_path: Path, prefect_server: str
) -> None:
    from sklearn.datasets import load_wine

    df = load_wine(as_frame=True).frame
    df["region"] = np.where(df["alcohol"] > df["alcohol"].median(), "north", "south")
    root = _project(tmp_path, df, "wine")
    out = _released(root, prefect_server, "wine", "--sensitive", "region")
    assert "f1_macro" in out

    import onnxruntime as ort

    sess = ort.InferenceSession(str(_champion_onnx(root, "wine")), providers=["CPUExecutionProvider"])
    x = _held_out(df).drop(columns=["target", "region"]).to_numpy(np.float32)
    logits = sess.run(["logits"], {"features": x})[0]
    assert logits.shape == (len(x), 3)
    assert (logits.argmax(axis=1) == _held_out(df)["target"].to_numpy()).mean() > 0.9
    assert _gate_metrics(root, "wine", "performance") == {"accuracy", "f1_macro", "roc_auc"}
    assert _gate_metrics(root, "wine", "fairness") == {"worst_group_accuracy", "accuracy_difference"}


def test_a_string_labelled_table_predicts_the_original_labels(tmp_path: Path, prefect_server: str) -> None:
    df = _breast_cancer()
    df["target"] = df["target"].map({0: "malignant", 1: "benign"})
    root = _project(tmp_path, df, "diagnosis")
    _released(root, prefect_server, "diagnosis")

    import onnxruntime as ort

    sess = ort.InferenceSession(str(_champion_onnx(root, "diagnosis")), providers=["CPUExecutionProvider"])
    held_out = _held_out(df)
    x = held_out.drop(columns=["target"]).to_numpy(np.float32)
    logits, labels = sess.run(["logits", "label"], {"features": x})
    assert set(labels.tolist()) <= {"benign", "malignant"}
    np.testing.assert_array_equal(labels, np.array(["benign", "malignant"])[logits.argmax(axis=1)])
    assert (labels == held_out["target"].to_numpy()).mean() > 0.9


def _with_nan(df: pd.DataFrame, root: Path) -> list[str]:
    df.loc[5, "mean radius"] = np.nan  # the next snapshot has a hole init never saw
    return []


def _with_one_class(df: pd.DataFrame, root: Path) -> list[str]:
    df["target"] = 1
    return []


def _without_label(df: pd.DataFrame, root: Path) -> list[str]:
    df.drop(columns="target", inplace=True)
    return []


def _with_narrow_base(df: pd.DataFrame, root: Path) -> list[str]:
    from attestflow.tabular import TabularMLP, save_checkpoint

    base = root / "data" / "base.safetensors"
    save_checkpoint(TabularMLP(7, (8,), 2), base)
    return ["--set", f"fine_tune.base_checkpoint={base}"]


@pytest.mark.parametrize(
    ("spoil", "said"),
    [
        (_with_nan, "mean radius"),
        (_with_one_class, "has one class"),
        (_without_label, "'target'"),
        (_with_narrow_base, "7"),
    ],
    ids=["nan-feature", "one-class", "no-label-column", "base-of-another-width"],
)
def test_bad_data_is_refused_in_one_line_before_training_and_recorded_in_the_audit_log(
    tmp_path: Path, prefect_server: str, spoil: Callable[[pd.DataFrame, Path], list[str]], said: str
) -> None:
    df = _breast_cancer()
    root = _project(tmp_path, df, "breast_cancer")
    _init(root, prefect_server, "breast_cancer")
    extra = spoil(df, root)  # the next snapshot is not what init saw
    df.to_csv(root / "data" / "breast_cancer.csv", index=False)

    done, seconds = _run(root, prefect_server, "breast_cancer", *extra)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and said in errors[0], output
    assert "Traceback" not in output and "Retry" not in output
    assert list((root / ".attestflow").glob("training/**/*.safetensors")) == []  # refused before training

    shown = _cli(root, prefect_server, "audit", "show", "--config", "configs/breast_cancer.yaml")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "release_failed" in shown.stdout and "stage=start" in shown.stdout, shown.stdout
    print(f"refused in {seconds:.1f} s")
