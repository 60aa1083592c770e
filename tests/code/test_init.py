"""`attestflow init` on tables the project did not generate: scikit-learn's breast-cancer and wine sets."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from attestflow.config import ValidateDataConfig, load_config
from attestflow.errors import BadInputError
from attestflow.policy import load_policy
from attestflow.scaffold import InitResult, init_project
from attestflow.scaffold.project import model_name_for
from flows.cli import app
from tests.code.test_cli import _loaded_in_fresh_interpreter


def _breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame


def _wine() -> pd.DataFrame:
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame


def _project(tmp_path: Path, df: pd.DataFrame, file: str = "data/table.csv") -> Path:
    """A project folder holding `df` at `file` (CSV or Parquet by suffix)."""
    root = tmp_path / "project"
    path = root / file
    path.parent.mkdir(parents=True)
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return root


def _nothing_written(root: Path) -> bool:
    return not (root / "configs").exists() and not (root / ".dvc").exists()


def _thresholds(policy_path: Path, section: str) -> dict[str, float]:
    policy = load_policy(policy_path)
    return {t.metric: t.threshold for t in getattr(policy, section).thresholds}


def _validates(result: InitResult, data: Path, tmp_path: Path) -> list[str]:
    """The failing expectations of the written suite on `data` (empty: it passes)."""
    from tasks.validate_data import validate_data

    record = validate_data(ValidateDataConfig(suite=result.suite), data, tmp_path)
    assert record.evaluated > 3
    return list(record.failed)


def test_init_writes_a_release_config_a_policy_and_a_suite_that_load_and_pass_on_the_same_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = _breast_cancer()
    root = _project(tmp_path, df, "data/breast_cancer.csv")
    result = init_project("data/breast_cancer.csv", "target", root=root)

    assert result.written == (
        root / "configs/breast_cancer.yaml",
        root / "configs/breast_cancer-gates.yaml",
        root / "configs/expectations/breast_cancer.yaml",
    )
    assert result.next_command == "attestflow run --config configs/breast_cancer.yaml"
    monkeypatch.chdir(root)  # the written paths are relative to the project folder
    cfg = load_config("configs/breast_cancer.yaml")
    assert cfg.model_name == "breast_cancer"
    assert cfg.data.path == Path("data/breast_cancer.csv")
    assert cfg.data.features == [c for c in df.columns if c != "target"]
    assert cfg.data.classes == [0, 1] and cfg.data.sensitive is None
    assert cfg.model.adapter == "tabular" and cfg.model.options == {"hidden": [32, 16]}
    assert cfg.fine_tune.base_checkpoint is None  # trained from scratch
    assert cfg.validate_data.suite == Path("configs/expectations/breast_cancer.yaml")
    assert cfg.gates.policy == Path("configs/breast_cancer-gates.yaml")

    # Thresholds sit a stated margin below the baseline, and the policy says so.
    policy = load_policy(cfg.gates.policy)
    assert "fairness" not in policy.run and policy.baseline.first_release == "absolute_only"
    thresholds = _thresholds(cfg.gates.policy, "performance")
    assert set(thresholds) == {"accuracy", "f1", "roc_auc"}
    for metric, value in result.baseline.metrics.items():
        assert value - 0.1 < thresholds[metric] <= value - 0.05
    text = cfg.gates.policy.read_text()
    assert f"baseline {result.baseline.metrics['accuracy']:.4f}" in text
    assert "To add one, set data.sensitive" in text

    assert _validates(result, root / "data/breast_cancer.csv", tmp_path) == []
    assert (root / ".dvc").is_dir() and result.dvc_init == "dvc init --no-scm"
    assert result.dvc_file == root / "data/breast_cancer.csv.dvc" and result.dvc_file.is_file()


def test_the_suite_catches_what_the_profile_did_not_see(tmp_path: Path) -> None:
    df = _breast_cancer()
    root = _project(tmp_path, df)
    result = init_project("data/table.csv", "target", root=root)
    bad = df.copy()
    bad.loc[0, "mean radius"] = np.nan
    bad.loc[1, "mean area"] = 1e6
    bad.loc[2, "target"] = 7
    bad.to_csv(tmp_path / "bad.csv", index=False)
    failed = _validates(result, tmp_path / "bad.csv", tmp_path)
    assert "expect_column_values_to_not_be_null(mean radius)" in failed
    assert "expect_column_values_to_be_between(mean area)" in failed
    assert "expect_column_values_to_be_in_set(target)" in failed


def test_a_multiclass_table_gets_multiclass_metrics_and_per_group_accuracy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = _wine()
    df["region"] = np.where(df["alcohol"] > df["alcohol"].median(), "north", "south")
    root = _project(tmp_path, df, "data/wine.parquet")
    result = init_project("data/wine.parquet", "target", sensitive="region", root=root)

    monkeypatch.chdir(root)
    cfg = load_config(result.config)
    assert cfg.data.classes == [0, 1, 2] and cfg.data.sensitive == "region"
    assert "region" not in cfg.data.features and len(cfg.data.features) == 13
    assert set(_thresholds(result.policy, "performance")) == {"accuracy", "f1_macro", "roc_auc"}
    assert set(_thresholds(result.policy, "fairness")) == {"worst_group_accuracy", "accuracy_difference"}
    assert "fairness" in load_policy(result.policy).run
    suite = yaml.safe_load(result.suite.read_text())
    in_set = {
        e["kwargs"]["column"]: e["kwargs"]["value_set"]
        for e in suite["expectations"]
        if e["type"].endswith("in_set")
    }
    assert in_set == {"target": [0, 1, 2], "region": ["north", "south"]}
    assert _validates(result, root / "data/wine.parquet", tmp_path) == []


def test_a_binary_table_with_a_sensitive_column_gets_parity_and_worst_group_thresholds(
    tmp_path: Path,
) -> None:
    df = _breast_cancer()
    df["site"] = np.where(np.arange(len(df)) % 3 == 0, "clinic", "hospital")
    root = _project(tmp_path, df)
    result = init_project("data/table.csv", "target", sensitive="site", root=root)
    fairness = load_policy(result.policy).fairness
    assert fairness is not None
    directions = {t.metric: t.direction for t in fairness.thresholds}
    assert directions == {"worst_group_accuracy": "at_least", "demographic_parity_difference": "at_most"}
    dpd = next(t for t in fairness.thresholds if t.metric == "demographic_parity_difference")
    assert dpd.threshold > result.baseline.fairness["demographic_parity_difference"]


def test_string_labels_become_explicit_quoted_string_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = _breast_cancer()
    df["target"] = df["target"].map({0: "no", 1: "yes"})
    root = _project(tmp_path, df)
    result = init_project("data/table.csv", "target", root=root)
    assert (
        "classes: ['no', 'yes']" in result.config.read_text()
    )  # quoted: YAML would read bare no/yes as booleans
    monkeypatch.chdir(root)
    assert load_config(result.config).data.classes == ["no", "yes"]
    assert _validates(result, root / "data/table.csv", tmp_path) == []


def test_a_free_text_column_selects_the_text_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    good = [
        "the battery lasts for days and the screen is bright",
        "works well, arrived early and well packed",
    ]
    bad = ["stopped working after a week, very disappointed", "the case cracked and support never answered"]
    labels = rng.integers(0, 2, 120)
    texts = [f"{(good if y else bad)[i % 2]} (order {i})" for i, y in enumerate(labels)]
    df = pd.DataFrame({"review": texts, "stars": rng.integers(1, 6, 120), "label": labels})
    root = _project(tmp_path, df)
    result = init_project("data/table.csv", "label", root=root)
    assert result.spec.adapter == "text_classifier" and result.spec.ignored == ("stars",)
    monkeypatch.chdir(root)
    cfg = load_config(result.config)
    assert cfg.model.adapter == "text_classifier" and cfg.model.options["text_column"] == "review"
    assert cfg.data.features == ["review"]
    assert "fgsm_epsilon" not in result.policy.read_text()
    assert load_policy(result.policy).resources is not None
    assert _validates(result, root / "data/table.csv", tmp_path) == []


def test_missing_feature_values_are_imputed_by_a_declared_rule_and_not_pinned_as_not_null(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = _breast_cancer()
    df.loc[[3, 40, 200], "mean texture"] = np.nan
    root = _project(tmp_path, df)
    result = init_project("data/table.csv", "target", root=root)
    monkeypatch.chdir(root)
    assert load_config(result.config).data.missing == "median"
    assert "not_be_null, kwargs: {column: mean texture}" not in result.suite.read_text()
    assert _validates(result, root / "data/table.csv", tmp_path) == []


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (None, {"label": "diagnosis"}, "--label 'diagnosis': no such column"),
        (None, {"label": "target", "sensitive": "sex"}, "--sensitive 'sex': no such column"),
        (lambda df: df.assign(target=1), {"label": "target"}, "has one class (1)"),
        (
            lambda df: df.assign(target=df["target"].where(df.index > 5)),
            {"label": "target"},
            "6 missing value(s)",
        ),
        (None, {"label": "target", "task": "regression"}, "regression is not supported yet"),
        (None, {"label": "target", "features": ["mean radius", "nope"]}, "no such column(s): 'nope'"),
        (lambda df: df.assign(stage=["I", "II"] * (len(df) // 2) + ["I"]), {"label": "target"}, "'stage'"),
        (lambda df: df.assign(target=df["mean area"]), {"label": "target"}, "looks like a regression target"),
    ],
)
def test_a_bad_table_or_option_is_one_line_and_writes_nothing(
    tmp_path: Path, change: object, kwargs: dict[str, object], message: str
) -> None:
    df = _breast_cancer()
    if callable(change):
        df = change(df)
    root = _project(tmp_path, df)
    with pytest.raises(BadInputError) as refused:
        init_project("data/table.csv", **kwargs, root=root)  # type: ignore[arg-type]
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert _nothing_written(root)


def test_a_non_numeric_column_is_named_and_features_leave_it_out(tmp_path: Path) -> None:
    df = _breast_cancer().assign(stage=lambda d: np.where(d["mean radius"] > 15, "late", "early"))
    root = _project(tmp_path, df)
    with pytest.raises(BadInputError, match=r"non-numeric column\(s\) 'stage'.*--features"):
        init_project("data/table.csv", "target", root=root)
    result = init_project("data/table.csv", "target", features=["mean radius", "mean area"], root=root)
    assert result.spec.features == ("mean radius", "mean area")


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    root = _project(tmp_path, _breast_cancer())
    first = init_project("data/table.csv", "target", root=root)
    policy_before = first.policy.read_text()
    first.config.write_text("# edited by hand\n")
    with pytest.raises(BadInputError, match=r"configs/table\.yaml exists; pass --force"):
        init_project("data/table.csv", "target", root=root)
    assert first.config.read_text() == "# edited by hand\n"
    again = init_project("data/table.csv", "target", force=True, root=root)
    assert again.dvc_init is None  # the DVC repository made the first time is reused
    assert (
        again.config.read_text().startswith("# Release configuration")
        and again.policy.read_text() == policy_before
    )


def test_data_outside_the_project_folder_is_refused(tmp_path: Path) -> None:
    root = _project(tmp_path, _breast_cancer())
    outside = tmp_path / "elsewhere.csv"
    _breast_cancer().to_csv(outside, index=False)
    with pytest.raises(BadInputError, match="must lie inside the project folder"):
        init_project(outside, "target", root=root)
    assert _nothing_written(root)


@pytest.mark.parametrize(
    ("stem", "name"),
    [("breast_cancer", "breast_cancer"), ("my data (v2)", "my-data-v2"), ("__x", "x"), ("??", "model")],
)
def test_the_model_name_is_the_file_stem_made_valid(stem: str, name: str) -> None:
    assert model_name_for(stem) == name
    assert re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", model_name_for(stem))


def test_the_cli_prints_what_it_wrote_and_inferred_and_the_next_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path, _wine().query("target != 2"), "data/wine 2.csv")
    monkeypatch.chdir(root)
    runner = CliRunner()
    done = runner.invoke(
        app, ["init", "--data", "data/wine 2.csv", "--label", "target", "--features", "alcohol, hue"]
    )
    assert done.exit_code == 0, done.output
    for shown in ("configs/wine-2.yaml", "configs/wine-2-gates.yaml", "configs/expectations/wine-2.yaml"):
        assert f"wrote {shown}" in done.output
    assert "features: alcohol, hue" in done.output and "classes: [0, 1] (binary)" in done.output
    assert "baseline: LogisticRegression" in done.output
    assert done.output.strip().endswith("next: attestflow run --config configs/wine-2.yaml")

    again = runner.invoke(app, ["init", "--data", "data/wine 2.csv", "--label", "target"])
    assert again.exit_code == 2 and "exists; pass --force" in again.output and "Traceback" not in again.output
    missing = runner.invoke(app, ["init", "--data", "data/wine 2.csv", "--label", "cultivar", "--force"])
    assert missing.exit_code == 2 and missing.output.strip().count("\n") == 0, missing.output
    absent = runner.invoke(app, ["init", "--data", "data/none.csv", "--label", "target"])
    assert absent.exit_code == 2 and "data file not found" in absent.output


def test_init_help_loads_none_of_the_heavy_libraries() -> None:
    run_cli = (
        "import runpy, sys, contextlib, io\n"
        "sys.argv = ['attestflow', 'init', '--help']\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    runpy.run_module('flows.cli', run_name='__main__')"
    )
    assert _loaded_in_fresh_interpreter(run_cli) == []


def test_in_a_git_checkout_dvc_is_initialised_with_git_and_the_data_ignored_by_it(tmp_path: Path) -> None:
    import subprocess

    root = _project(tmp_path, _breast_cancer())
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    result = init_project("data/table.csv", "target", root=root)
    assert result.dvc_init == "dvc init" and (root / ".dvc").is_dir()
    assert "/table.csv" in (root / "data/.gitignore").read_text().splitlines()


def test_a_dvc_repository_above_the_project_folder_is_used_and_named_in_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    root = _project(tmp_path, _breast_cancer())
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    result = init_project("data/table.csv", "target", root=root)
    assert result.dvc_init is None and not (root / ".dvc").exists()
    monkeypatch.chdir(root)
    assert load_config(result.config).snapshot.repo == Path("..")
