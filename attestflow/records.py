"""Evidence records: what each release stage returns and leaves behind.

Stages pass these small records (paths, URIs, digests, numbers) to each other, never
tensors or DataFrames, so every hand-over can be logged, persisted and checked.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from attestflow.checks.core import PreflightRecord
from attestflow.digests import Digest
from attestflow.lineage import CodeRevision
from attestflow.redact import redact_json


def to_jsonable(record: Any) -> Any:
    """A record (or nested records) as plain JSON types; NaN and infinity become null."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: to_jsonable(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, dict):
        return {str(k): to_jsonable(v) for k, v in record.items()}
    if isinstance(record, list | tuple):
        return [to_jsonable(v) for v in record]
    if isinstance(record, Path):
        return str(record)
    if isinstance(record, float) and not math.isfinite(record):
        return None
    return record


def write_json(path: Path, record: Any) -> Path:
    """Write a record as indented JSON with its credentials redacted, atomically (temp file then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(redact_json(to_jsonable(record)), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class AuditEvent:
    """What a record puts in the audit log: an event, the model version it is about, its details."""

    event: str
    details: dict[str, Any]
    version: str | None = None
    names_run: bool = False
    """Whether the entry also names the flow run (``flow_run_id``)."""

    def audit_events(self) -> list[AuditEvent]:
        return [self]


class Audited(Protocol):
    """A record that says what of it goes into the audit log."""

    def audit_events(self) -> list[AuditEvent]: ...


@dataclass(frozen=True)
class Invocation:
    """How, from which code and by whom a release was started, as its provenance records it."""

    config_path: str
    overrides: list[str]
    flow_run_id: str
    started_on: str
    """ISO 8601 time, to the second, in UTC."""
    triggered_by: str
    """The actor (``kind:name``) who or what started it."""
    revision: CodeRevision
    preflight: PreflightRecord | None = None
    """The checks (`attestflow check`) the release ran on its repository before any stage."""


@dataclass(frozen=True)
class SnapshotRecord:
    """A dataset tracked by DVC and pushed to its remote."""

    data_path: Path
    dvc_md5: str
    """DVC's own md5 of the data, as written in dvc.lock or the .dvc file."""
    dvc_file: Path
    """The file where DVC recorded it (dvc.lock or ``<data>.dvc``)."""
    manifest_path: Path
    """JSON manifest: relative path -> SHA-256 of every file of the dataset."""
    manifest_digest: Digest
    files: int
    size_bytes: int
    remote: str | None
    """Name of the DVC remote it was pushed to; None when push was off."""
    remote_url: str | None
    """URL of that remote (credentials removed)."""

    def audit_events(self) -> list[AuditEvent]:
        details = {"dvc_md5": self.dvc_md5, "manifest_sha256": self.manifest_digest.value}
        return [AuditEvent("snapshot", details, names_run=True)]


@dataclass(frozen=True)
class DataValidationRecord:
    """The result of the Great Expectations suite on the snapshot."""

    suite: str
    success: bool
    evaluated: int
    failed: list[str]
    """Failing expectations as ``type(column)``."""
    result_path: Path
    engine: str = "pandas"
    """Which engine ran the suite: ``pandas`` (whole table), ``chunked`` or ``spark``."""

    def audit_events(self) -> list[AuditEvent]:
        return [
            AuditEvent(
                "data_validation",
                {"passed": self.success, "failed": self.failed, "engine": self.engine},
                names_run=True,
            )
        ]


@dataclass(frozen=True)
class WarmStart:
    """Fine-tuning starts from a released model's weights instead of the base checkpoint."""

    model_uri: str
    """``models:/NAME/VERSION`` whose training checkpoint this is (verified before use)."""
    path: Path
    digest: Digest
    """SHA-256 of the checkpoint, as the version's signed provenance records it."""

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WarmStart:
        return cls(raw["model_uri"], Path(raw["path"]), Digest(**raw["digest"]))


FROM_SCRATCH = "none (trained from scratch)"
"""The base checkpoint a model trained from scratch names, in tags and params."""


def training_start(base: Digest, architecture: dict[str, Any] | None) -> dict[str, str]:
    """Tags saying what training started from: the base's SHA-256, or none and the architecture spec's."""
    if architecture is None:
        return {"base_checkpoint_sha256": base.value}
    return {"base_checkpoint_sha256": FROM_SCRATCH, "architecture_sha256": base.value}


@dataclass(frozen=True)
class TrainingRecord:
    """A fine-tuned model and how it was made."""

    checkpoint_path: Path
    """safetensors weights of the final step."""
    checkpoint_digest: Digest
    base_checkpoint_digest: Digest
    """The weights training started from: the base model's, or the warm start's; trained from
    scratch, the digest of the `architecture` spec (its ``of`` says so)."""
    epoch_checkpoints: list[str]
    """SHA-256 of each epoch's last checkpoint, in order."""
    device: str
    precision: str
    epochs: int
    resumed_from_epoch: int
    """Epochs completed by the checkpoint training resumed from; 0 when it started afresh."""
    mlflow_run_id: str
    metrics: dict[str, float]
    samples_per_s: float
    training_key: str
    """Digest of every input of training; the checkpoint folder is named after it."""
    resumed_from_step: int = 0
    """Optimizer steps completed by the checkpoint training resumed from (may be mid-epoch)."""
    peak_memory_mb: float = 0.0
    """Peak CUDA memory allocated on a GPU; the process's peak resident memory on the CPU."""
    adapter: str = "tabular"
    processes: int = 1
    """Training processes (DDP ranks)."""
    warm_start: WarmStart | None = None
    architecture: dict[str, Any] | None = None
    """Set when the model was trained from scratch (no base weights): the spec it was built from."""

    @property
    def trained_from(self) -> str:
        """``scratch``, ``warm_start`` (the champion's weights) or ``base_checkpoint``."""
        if self.architecture is not None:
            return "scratch"
        return "warm_start" if self.warm_start is not None else "base_checkpoint"

    def start_tags(self) -> dict[str, str]:
        """What training started from, as tags (`training_start`)."""
        return training_start(self.base_checkpoint_digest, self.architecture)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TrainingRecord:
        """The record `write_json` wrote (for a training run in another process)."""
        fields = dict(raw)
        fields["checkpoint_path"] = Path(raw["checkpoint_path"])
        fields["checkpoint_digest"] = Digest(**raw["checkpoint_digest"])
        fields["base_checkpoint_digest"] = Digest(**raw["base_checkpoint_digest"])
        fields["metrics"] = {k: (float("nan") if v is None else v) for k, v in raw["metrics"].items()}
        fields["warm_start"] = WarmStart.from_json(raw["warm_start"]) if raw.get("warm_start") else None
        return cls(**fields)


@dataclass(frozen=True)
class OnnxExportRecord:
    """An exported ONNX model."""

    onnx_path: Path
    digest: Digest
    opset: int
    inputs: dict[str, list[str | int]]
    """Input name -> shape, symbolic axes by name."""
    outputs: dict[str, list[str | int]]
    size_bytes: int


@dataclass(frozen=True)
class OnnxValidationRecord:
    """The ONNX model run in ONNX Runtime against torch on held-out rows."""

    provider: str
    """The execution provider that actually ran the session."""
    max_abs_diff: float
    tolerance: float
    rows: int
    latency_ms_p50: float
    latency_ms_p95: float
    metrics: dict[str, float]
    """Held-out metrics computed from ONNX Runtime outputs (what would be deployed)."""


@dataclass(frozen=True)
class ExplanationRecord:
    """The model's attributions (`attestflow.explain`), written as JSON for the signed bundle."""

    path: Path
    digest: Digest
    method: str
    rows: int
    top: list[str]
    """The features (or tokens) with the largest global attributions, largest first."""
    seconds: float


@dataclass(frozen=True)
class SignatureRecord:
    """A signed release bundle and its signed provenance."""

    bundle_dir: Path
    onnx_digest: Digest
    bundle_digest: Digest
    """SHA-256 of the canonical JSON manifest of every signed file but the provenance (which names it)."""
    signature_path: Path
    signature_digest: Digest
    provenance_path: Path
    provenance_digest: Digest
    key_id: str
    release_key: str
    """Digest of the build inputs (data, config, code, lock, base checkpoint): same inputs, same key."""


@dataclass(frozen=True)
class RegistrationRecord:
    """A model version in the MLflow registry."""

    model_name: str
    version: str
    model_uri: str
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)
    reused: bool = False
    """True when the same inputs were already registered and that version was returned."""
    resumed: bool = False
    """True when the reused version was left incomplete (its release stopped before its gate verdict)."""

    @property
    def bundle_sha256(self) -> str:
        """The registered bundle's SHA-256: for a reused version, that of the bundle registered first."""
        return self.tags["bundle_sha256"]

    def audit_events(self) -> list[AuditEvent]:
        details = {"reused": self.reused, **({"resumed_incomplete": True} if self.resumed else {})}
        return [AuditEvent("registration", details, self.version)]


def finite(value: float | None) -> float | None:
    """`value` as a float, or None when it is missing or not finite (JSON has no NaN)."""
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class GateDecision:
    """One gate's verdict on one metric, and why."""

    gate: str
    metric: str
    value: float
    """The measured value; NaN when the gate could not measure it."""
    threshold: float
    margin: float
    """Distance from the threshold on the passing side: negative fails, NaN could not be measured."""
    passed: bool
    reason: str
    """One sentence a person can act on."""
    policy_digest: str
    """``sha256:<hex>`` of the gate policy that decided (see `GatePolicy.digest`)."""
    baseline_value: float | None = None
    """The baseline's (champion's) value of the metric, where the gate compares with one."""
    ci: tuple[float, float] | None = None
    """Confidence interval of `value`, where the gate computes one."""

    def summary(self) -> dict[str, Any]:
        """The decision as signed evidence and the model card state it: values JSON can hold (no NaN)."""
        return {
            "gate": self.gate,
            "metric": self.metric,
            "passed": self.passed,
            "value": finite(self.value),
            "threshold": finite(self.threshold),
        }


@dataclass(frozen=True)
class GateReport:
    """Every decision of one run of the gate suite, bound to the model and policy they judged."""

    model: str
    """The ONNX file or registered model URI that was judged."""
    model_digest: Digest
    policy_digest: Digest
    provider: str
    """The ONNX Runtime execution provider that ran the evaluations."""
    baseline: str | None
    """``models:/NAME/VERSION`` of the baseline the candidate was compared with, if any."""
    passed: bool
    """True when every decision passed (an empty suite does not pass)."""
    decisions: list[GateDecision]
    seconds: float
    """Time the suite took, evaluation included."""
    human_approval: bool = False
    """True when the policy requires a person's approval whatever ``approve.mode`` says (a first
    release under ``first_release: require_approval``)."""

    def failures(self) -> list[str]:
        """One line per failing gate; metrics that failed for the same reason are named together."""
        by_gate: dict[str, dict[str, list[str]]] = {}
        for d in self.decisions:
            if d.passed:
                continue
            shared = d.reason.removeprefix(f"{d.metric} ") if d.reason.startswith(f"{d.metric} ") else None
            key, metric = (shared, d.metric) if shared else (d.reason, "")
            by_gate.setdefault(d.gate, {}).setdefault(key, []).append(metric)
        lines = []
        for gate, reasons in by_gate.items():
            said = [f"{', '.join(metrics)} {why}" if metrics[0] else why for why, metrics in reasons.items()]
            lines.append(f"gate {gate}: {'; '.join(said)}")
        return lines

    def audit_events(self) -> list[AuditEvent]:
        """One ``gate`` event per decision (the model version is the caller's to add)."""
        said = ("gate", "metric", "passed", "margin", "reason")
        return [
            AuditEvent("gate", {**{k: getattr(d, k) for k in said}, "policy": d.policy_digest})
            for d in self.decisions
        ]
