"""Stage `model_card`: the release's model card, from its evidence and ``configs/model_card.yaml``.

It runs once the gate verdict is signed, since the card carries every gate decision. The
held-out metrics are measured again on the ONNX model in ONNX Runtime, this time with
percentile bootstrap intervals (resampled as the regression gate resamples, with its policy's
confidence, resamples and seed where it has one), and per group of the sensitive attribute as
the fairness gate groups them. The card JSON and its markdown go into the release folder, the
training run's artifacts (``model_card/``), the model version's description and the Prefect
run page; the flow then signs the card into the version's evidence (`flows.evidence`).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from attestflow.adapters import load_adapter
from attestflow.aibom import ARCHITECTURES
from attestflow.artifacts import artifact_key
from attestflow.bundle import ATTRIBUTIONS
from attestflow.config import ReleaseConfig
from attestflow.dataset import load_splits
from attestflow.evidence import now
from attestflow.model_card import (
    attribution_summary,
    build_model_card,
    card_text,
    finite,
)
from attestflow.model_card_render import render_markdown
from attestflow.onnx_runtime import metric_names
from attestflow.policy import GatePolicy
from attestflow.progress import in_prefect_run
from attestflow.records import (
    GateReport,
    OnnxExportRecord,
    RegistrationRecord,
    SignatureRecord,
    SnapshotRecord,
    TrainingRecord,
)
from attestflow.registry import Registry
from tasks.gates.evaluation import run_model
from tasks.gates.fairness import group_metrics
from tasks.gates.regression import bootstrap_interval

MAX_DESCRIPTION = 5000
"""MLflow's SQL stores keep at most this many characters of a model version's description."""


@dataclass(frozen=True)
class ModelCardRecord:
    """The card as JSON, where it and its markdown were written, and how long it took."""

    card: dict[str, Any]
    card_path: Path
    markdown_path: Path
    seconds: float


def held_out_figures(
    cfg: ReleaseConfig, onnx_path: Path, policy: GatePolicy
) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """Metrics with bootstrap intervals, per-group metrics, and the number of rows of the dataset."""
    train, test = load_splits(cfg.data, load_adapter(cfg.model))
    run = run_model(onnx_path, "cpu", test.inputs)
    rules = policy.regression
    confidence, resamples, seed = (
        (rules.confidence, rules.resamples, rules.seed) if rules else (0.95, 1000, 0)
    )
    if run.logits is None:
        raise ValueError(f"the model card cannot measure the model: {run.problem}")
    metrics = []
    for name in metric_names(run.logits.shape[1]):
        value, lo, hi = bootstrap_interval(
            name, test.y, run.logits, confidence=confidence, resamples=resamples, seed=seed
        )
        metrics.append(
            {
                "name": name,
                "value": finite(value),
                "ci_low": finite(lo),
                "ci_high": finite(hi),
                "confidence": confidence,
                "resamples": resamples,
                "rows": len(test),
            }
        )
    pred = np.asarray(run.logits).argmax(axis=1)
    groups = (
        group_metrics(test.y, pred, test.sensitive, run.logits.shape[1]) if test.sensitive is not None else []
    )
    return metrics, {"attribute": cfg.data.sensitive, "groups": groups}, len(train) + len(test)


def _gates(gates: GateReport) -> dict[str, Any]:
    return {
        "passed": gates.passed,
        "policy_sha256": gates.policy_digest.value,
        "decisions": [{**d.summary(), "reason": d.reason} for d in gates.decisions],
    }


def description(markdown: str, limit: int = MAX_DESCRIPTION) -> str:
    """The markdown as a model version description: whole, or cut at a line with a note where the rest is."""
    if len(markdown) <= limit:
        return markdown
    note = "\n\n_(cut here; the whole card is in the version's evidence/ and the run's model_card/)_"
    return markdown[: markdown.rfind("\n", 0, limit - len(note))] + note


def model_card(
    cfg: ReleaseConfig,
    policy: GatePolicy,
    snap: SnapshotRecord,
    trained: TrainingRecord,
    exported: OnnxExportRecord,
    signed: SignatureRecord,
    registered: RegistrationRecord,
    gates: GateReport,
    *,
    out_dir: Path,
    tracking_uri: str,
) -> ModelCardRecord:
    """Build, validate and publish the release's model card (JSON and markdown)."""
    started = time.perf_counter()
    metrics, groups, rows = held_out_figures(cfg, exported.onnx_path, policy)
    card = build_model_card(
        model={
            "name": registered.model_name,
            "version": registered.version,
            "uri": registered.model_uri,
            "adapter": cfg.model.adapter,
            "architecture": ARCHITECTURES.get(cfg.model.adapter, cfg.model.adapter),
            "onnx_sha256": signed.onnx_digest.value,
            "bundle_sha256": signed.bundle_digest.value,
            "signing_key_id": signed.key_id,
            "opset": exported.opset,
        },
        data={
            "path": str(cfg.data.path),
            "dvc_md5": snap.dvc_md5,
            "manifest_sha256": snap.manifest_digest.value,
            "rows": rows,
            "held_out_rows": metrics[0]["rows"] if metrics else 0,
            "features": cfg.data.features,
            "label": cfg.data.label,
            "sensitive": cfg.data.sensitive,
            "test_fraction": cfg.data.test_fraction,
        },
        training={
            "config_sha256": cfg.digest().value,
            "mlflow_run_id": trained.mlflow_run_id,
            "epochs": trained.epochs,
            "device": trained.device,
            "precision": trained.precision,
            "trained_from": trained.trained_from,
            "base_checkpoint_sha256": trained.base_checkpoint_digest.value,
            "metrics": trained.metrics,
        },
        metrics=metrics,
        groups=groups,
        gates=_gates(gates),
        attributions=attribution_summary(signed.bundle_dir / ATTRIBUTIONS),
        text=card_text(cfg.model_card.path),
        generated=now(),
    )
    markdown = render_markdown(card)
    folder = out_dir / "model_card"
    folder.mkdir(parents=True, exist_ok=True)
    card_path = folder / "card.json"
    card_path.write_text(json.dumps(card, indent=2), encoding="utf-8")
    markdown_path = folder / "card.md"
    markdown_path.write_text(markdown, encoding="utf-8")
    registry = Registry(tracking_uri)
    registry.set_version_description(registered.model_name, registered.version, description(markdown))
    with tempfile.TemporaryDirectory(prefix="attestflow-card-") as tmp:
        for path in (card_path, markdown_path):
            (Path(tmp) / path.name).write_bytes(path.read_bytes())
        registry.log_run_artifacts(trained.mlflow_run_id, Path(tmp), "model_card")
    if in_prefect_run():
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(
            key=artifact_key(registered.model_name, "model-card"),
            markdown=markdown,
            description=f"model card of {registered.model_uri}",
        )
    return ModelCardRecord(card, card_path, markdown_path, time.perf_counter() - started)


model_card_task = task(name="model_card")(model_card)
