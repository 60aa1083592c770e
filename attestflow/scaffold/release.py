"""The release config `attestflow init` writes, modelled on configs/release.yaml and configs/text.yaml.

Only `data`, `model` and `fine_tune` depend on the table; the other sections are the bundled
example's settings. Training settings are sized to the table: a tabular model is trained from
scratch (no base checkpoint), which on a few hundred rows takes seconds; a text model fine-tunes
the shipped MiniLM for one epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from attestflow.scaffold.table import SPLIT_SEED, TEST_FRACTION, TableSpec
from attestflow.scaffold.yamltext import block_list, inline

DEFAULT_HIDDEN = [32, 16]
"""Hidden layer widths of the MLP trained from scratch (the tabular adapter's default)."""


@dataclass(frozen=True)
class Training:
    """Training settings sized to the number of training rows."""

    epochs: int
    batch_size: int
    lr: float


def tabular_training(rows: int) -> Training:
    """Enough optimizer steps to converge on a small table, few enough epochs on a large one."""
    train_rows = rows * (1 - TEST_FRACTION)
    if train_rows <= 5_000:
        return Training(epochs=20, batch_size=32, lr=0.003)
    return Training(epochs=10 if train_rows <= 50_000 else 5, batch_size=128, lr=0.003)


def text_max_length(texts: pd.Series) -> int:
    """Tokens per row: 1.5x the 95th percentile of words (word pieces outnumber words), in [32, 256]."""
    words = float(texts.map(lambda t: len(str(t).split())).quantile(0.95))
    return min(256, max(32, 16 * math.ceil((1.5 * words + 2) / 16)))


def _data(spec: TableSpec, data_path: str) -> list[str]:
    sensitive = (
        f"  sensitive: {inline(spec.sensitive)}  # the groups the fairness gate compares"
        if spec.sensitive
        else "  # sensitive: COLUMN          # the groups the fairness gate compares; unset: no fairness gate"
    )
    missing = "median" if spec.with_missing else "refuse"
    why = (
        f"# {', '.join(spec.with_missing)} had missing values: imputed with the training median"
        if spec.with_missing
        else "# a missing feature value: `refuse` stops the release; `median` imputes it"
    )
    return [
        "data:",
        f"  path: {inline(data_path)}  # CSV or Parquet; tracked with DVC",
        f"  label: {inline(spec.label)}  # the column the model predicts",
        "  # The model's input columns"
        + (": the one free-text column." if spec.text_column else " (numbers)."),
        block_list("features", list(spec.features), 2),
        sensitive,
        f"  classes: {inline(list(spec.classes))}  # the label's values in class order: the model returns these",
        f"  missing: {missing}  {why}",
        f"  test_fraction: {TEST_FRACTION}  # held-out share for the ONNX checks and the gates",
        f"  split_seed: {SPLIT_SEED}  # the same rows are held out in every stage and release",
    ]


def _model_and_training(spec: TableSpec, df: pd.DataFrame) -> list[str]:
    if spec.text_column is not None:
        return [
            "model:",
            "  adapter: text_classifier      # all-MiniLM-L6-v2 (shipped offline) with a classification head",
            "  options:",
            f"    text_column: {inline(spec.text_column)}",
            f"    max_length: {text_max_length(df[spec.text_column])}  # tokens per row; longer texts are cut",
            "",
            "fine_tune:",
            "  # base_checkpoint unset: the adapter's default, the package's MiniLM folder.",
            "  epochs: 1",
            "  batch_size: 32",
            "  lr: 5.0e-5",
            "  weight_decay: 0.01",
            "  seed: 0",
            "  device: auto                  # a GPU when there is one",
            "  amp: true                     # bf16 autocast on a GPU",
            "  checkpoint_every: 20",
            "  retries: 2",
            "  retry_delay_s: 1",
            "  timeout_s: 3600",
        ]
    t = tabular_training(len(df))
    return [
        "model:",
        "  adapter: tabular              # an MLP over the numeric features; normalisation is inside the model",
        "  options:",
        f"    hidden: {inline(DEFAULT_HIDDEN)}  # hidden layer widths",
        "",
        "fine_tune:",
        "  # No base_checkpoint: the network is built from the data's shape and trained from scratch.",
        "  # To fine-tune pretrained weights instead, set base_checkpoint: a TabularMLP safetensors file",
        "  # with as many inputs as data.features and as many outputs as data.classes.",
        f"  epochs: {t.epochs}",
        f"  batch_size: {t.batch_size}",
        f"  lr: {t.lr}",
        "  seed: 0",
        "  device: auto",
        "  amp: true",
        "  retries: 2",
        "  retry_delay_s: 1",
        "  timeout_s: 1800",
    ]


def config_yaml(
    spec: TableSpec,
    df: pd.DataFrame,
    *,
    name: str,
    data_path: str,
    suite_path: str,
    policy_path: str,
    dvc_repo: str,
) -> str:
    """The release config as commented YAML."""
    kind = "binary" if len(spec.classes) == 2 else f"{len(spec.classes)}-class"
    text_stage_s = 600 if spec.text_column is not None else 300
    lines = [
        f"# Release configuration written by `attestflow init` for {data_path}: a {kind} classifier of",
        f"# {spec.label!r}. Run it with `attestflow run --config <this file>`; override a key with --set stage.key=value.",
        "# The keys that matter for your data are in `data`, `model` and `fine_tune`; the other sections",
        "# are the bundled example's settings (configs/release.yaml explains them).",
        "workspace: .attestflow           # all local state: Prefect, MLflow, the DVC remote, release folders",
        f"model_name: {inline(name)}  # the registered model's name",
        "",
        *_data(spec, data_path),
        "",
        *_model_and_training(spec, df),
        "",
        "snapshot:",
        f"  repo: {inline(dvc_repo)}  # the DVC repository that tracks data.path",
        "  remote: local                 # a DVC remote of that name, else a folder in the workspace",
        "  push: true",
        "  retries: 2",
        "  retry_delay_s: 2",
        "  timeout_s: 600",
        "",
        "validate_data:",
        f"  suite: {inline(suite_path)}  # expectations profiled from the data: edit to tighten",
        "  retries: 0",
        "  timeout_s: 300",
        "",
        "export_onnx:",
        "  opset: 18",
        "  retries: 1",
        f"  timeout_s: {text_stage_s}",
        "",
        "validate_onnx:",
        "  provider: auto",
        "  tolerance: 1.0e-4             # largest |ONNX - torch| difference allowed on held-out rows",
        f"  parity_rows: {128 if spec.text_column else 512}",
        f"  latency_runs: {10 if spec.text_column else 50}",
        "  retries: 1",
        f"  timeout_s: {text_stage_s}",
        "",
        "register:",
        f"  experiment: {inline(name)}  # the MLflow experiment of the training runs",
        "  retries: 3                     # with the delay: outlasts ~40 s of registry outage",
        "  retry_delay_s: 10",
        f"  timeout_s: {text_stage_s}",
        "",
        "gates:",
        f"  policy: {inline(policy_path)}  # thresholds set from a baseline: see the comments there",
        "  retries: 1",
        f"  timeout_s: {900 if spec.text_column else 300}",
        "",
        "promote:",
        "  alias: champion",
        "  retries: 2",
        "  timeout_s: 120",
    ]
    return "\n".join(lines) + "\n"
