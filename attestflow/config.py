"""Typed release configuration, loaded once from YAML at flow entry.

One pydantic model per stage, each with ``extra="forbid"`` so that a misspelt key is an
error instead of a silently ignored setting. ``--set stage.key=value`` overrides are applied
to the raw YAML before validation, so they are checked exactly like the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from attestflow.digests import Digest, json_digest
from attestflow.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class StageConfig(_Model):
    """What every stage shares: how Prefect retries it and how long it may run."""

    retries: int = Field(1, ge=0, le=10)
    retry_delay_s: float = Field(2.0, ge=0)
    timeout_s: float = Field(900.0, gt=0)


class DataConfig(_Model):
    """Where the dataset is and what its columns mean."""

    path: Path
    label: str
    features: list[str] = Field(min_length=1)
    sensitive: str | None = None
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0


class SnapshotConfig(StageConfig):
    """DVC snapshot of the dataset."""

    repo: Path = Path(".")
    remote: str = "local"
    remote_url: str | None = None
    """URL of the DVC remote; unset uses the repo's remote of that name, or the workspace's."""
    push: bool = True


class ValidateDataConfig(StageConfig):
    """Great Expectations suite that the data must pass."""

    suite: Path


class FineTuneConfig(StageConfig):
    """Fine-tuning of the base checkpoint."""

    base_checkpoint: Path
    epochs: int = Field(6, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    """Mixed precision (bf16 autocast) when training on CUDA; ignored on the CPU."""
    allow_pickle_import: bool = False
    """Import a pickle-based base checkpoint after a picklescan scan, with weights_only loading."""


class ExportOnnxConfig(StageConfig):
    """torch -> ONNX export."""

    opset: int = Field(18, ge=18, le=23)


class ValidateOnnxConfig(StageConfig):
    """ONNX Runtime check of the exported model."""

    provider: Literal["auto", "cpu", "cuda"] = "auto"
    tolerance: float = Field(1e-4, gt=0)
    parity_rows: int = Field(512, ge=1)
    latency_runs: int = Field(50, ge=1)


class SignConfig(StageConfig):
    """Signing of the release bundle and its provenance."""

    private_key: Path | None = None
    """PEM EC private key; unset uses the workspace key pair (created on first use)."""
    public_key: Path | None = None
    """The trusted PEM public key that verification uses; must pair with `private_key`."""
    allow_dirty: bool = False
    """Release from a work tree with uncommitted changes (recorded in the provenance)."""
    builder_id: str = "https://attestflow.dev/builders/prefect-release-flow@v1"


class RegisterConfig(StageConfig):
    """MLflow registration."""

    tracking_uri: str | None = None
    """MLflow tracking (and registry) URI; unset uses SQLite in the workspace."""
    experiment: str = "attestflow"


class GatesConfig(StageConfig):
    """The gate suite: the versioned policy file that says which gates run and their thresholds."""

    policy: Path = Path("configs/gates.yaml")


class ApproveConfig(_Model):
    """Who must approve a promotion: nobody (``auto``, for dev) or a person (``human``)."""

    mode: Literal["auto", "human"] = "auto"
    timeout_s: float = Field(3600.0, gt=0)
    """How long a human approval may take; when it runs out the release counts as rejected."""


class PromoteConfig(StageConfig):
    """Promotion of a gated, verified and approved model version."""

    alias: str = Field("champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    previous_alias: str = Field("previous", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")


class CanaryConfig(StageConfig):
    """The check of a new champion against the previous one on recent data, after promotion."""

    sample: Path | None = None
    """Recent data to score (CSV/Parquet with the feature columns); unset uses the held-out split."""
    rows: int = Field(1000, ge=1)
    max_error_rate: float = Field(0.0, ge=0, le=1)
    """Share of rows on which the new model fails or returns a non-finite score."""
    max_disagreement: float = Field(0.2, ge=0, le=1)
    """Share of rows on which new and previous champion predict different classes."""
    max_latency_ratio: float = Field(3.0, gt=0)
    """New model's median batch latency over the previous one's (both timed alternately)."""
    latency_floor_ms: float = Field(1.0, ge=0)
    """Latencies below this count as this: sub-millisecond differences are scheduler noise."""


# The section `register` shares its name with ABCMeta.register of the model class; the
# instance attribute is what is meant, so pydantic's shadowing warning is noise here.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class DriftConfig(StageConfig):
    """When a new data snapshot counts as drifted from the champion's training data."""

    psi_threshold: float = Field(0.2, gt=0)
    """Population stability index of a feature above which it has drifted (0.1-0.25 is the usual band)."""
    ks_threshold: float = Field(0.15, gt=0, le=1)
    """Two-sample Kolmogorov-Smirnov statistic of a feature above which it has drifted."""
    label_shift_threshold: float = Field(0.1, gt=0, le=1)
    """Total variation distance between the label distributions above which the labels have drifted."""
    bins: int = Field(10, ge=2, le=100)


class CacheConfig(_Model):
    """Content-keyed caching of the pure stages (validate_data, fine_tune, export_onnx, validate_onnx)."""

    enabled: bool = True
    """A re-run with the same data, config and code reuses those stages' results (files re-checked)."""


class ReleaseConfig(_Model):
    """The whole release: one section per stage."""

    workspace: Path = Path(".attestflow")
    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: DataConfig
    snapshot: SnapshotConfig = SnapshotConfig()
    validate_data: ValidateDataConfig
    fine_tune: FineTuneConfig
    export_onnx: ExportOnnxConfig = ExportOnnxConfig()
    validate_onnx: ValidateOnnxConfig = ValidateOnnxConfig()
    sign: SignConfig = SignConfig()
    register: RegisterConfig = RegisterConfig()
    gates: GatesConfig = GatesConfig()
    approve: ApproveConfig = ApproveConfig()
    promote: PromoteConfig = PromoteConfig()
    canary: CanaryConfig = CanaryConfig()
    drift: DriftConfig = DriftConfig()
    cache: CacheConfig = CacheConfig()

    def digest(self) -> Digest:
        """SHA-256 of the validated configuration as canonical JSON."""
        return json_digest(self.model_dump(mode="json"))


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into a key path and a YAML-typed value."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. fine_tune.epochs=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``a.b=value`` in a copy of the raw config mapping."""
    out: dict[str, Any] = _deep_copy(raw)
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
    return out


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj


def describe_validation_error(source: str, err: ValidationError) -> str:
    """One line naming the first invalid key of `source` and what is wrong with it."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key {where!r}"
    if kind == "missing":
        return f"{source}: missing required key {where!r}"
    got = first.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return f"{source}: {where}: {first['msg']}{shown}"


def load_config(path: Path | str, overrides: list[str] | None = None) -> ReleaseConfig:
    """Load, override and validate a release config; any problem is one `ConfigError` line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{line} is not valid YAML") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    raw = apply_overrides(raw, overrides or [])
    try:
        return ReleaseConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(str(path), e)) from None


def default_config_path() -> Path:
    """The config used when none is given: ``$ATTESTFLOW_CONFIG`` or ``configs/release.yaml``."""
    return Path(os.environ.get("ATTESTFLOW_CONFIG", "configs/release.yaml"))
