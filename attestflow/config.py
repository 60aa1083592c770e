"""Typed release configuration, loaded once from YAML at flow entry.

One pydantic model per stage, each with ``extra="forbid"`` so that a misspelt key is an
error instead of a silently ignored setting. ``--set stage.key=value`` overrides are applied
to the raw YAML before validation, so they are checked exactly like the file.
"""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from attestflow.digests import Digest, json_digest
from attestflow.errors import ConfigError
from attestflow.overrides import apply_overrides
from attestflow.redact import redact_json
from attestflow.settings import ApproveConfig, KeySpec, Settings
from attestflow.yamlfile import read_yaml

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner


class StageConfig(Settings):
    """What every stage shares: how Prefect retries it and how long it may run."""

    retries: int = Field(1, ge=0, le=10)
    retry_delay_s: float = Field(2.0, ge=0)
    timeout_s: float = Field(900.0, gt=0)


class DataConfig(Settings):
    """Where the dataset is and what its columns mean."""

    path: Path
    label: str
    features: list[str] = Field(min_length=1)
    sensitive: str | None = None
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0
    classes: list[str | int] | None = None
    """The label's values in class order (class i is ``classes[i]``); the model returns these.
    Unset: the label's distinct values in the data, sorted (filled in when a release starts)."""
    missing: Literal["refuse", "median"] = "refuse"
    """A missing feature value: refused before training, or replaced by the training rows' median
    (inside the model, so serving does the same)."""

    @field_validator("classes", mode="before")
    @classmethod
    def _no_booleans(cls, values: Any) -> Any:
        # YAML reads unquoted yes/no/true/false as booleans: a class named "yes" must be quoted.
        if isinstance(values, list) and any(isinstance(v, bool) for v in values):
            raise ValueError("classes holds a boolean; quote class names such as 'yes' and 'no' in YAML")
        return values

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, values: list[str | int] | None) -> list[str | int] | None:
        if values is None:
            return None
        if len(values) < 2:
            raise ValueError("a classifier needs at least two classes")
        if len({str(v) for v in values}) != len(values):
            raise ValueError("classes must be distinct")
        if len({type(v) for v in values}) != 1:
            raise ValueError("classes must be all integers or all strings")
        return values


class SnapshotConfig(StageConfig):
    """DVC snapshot of the dataset."""

    repo: Path = Path(".")
    remote: str = "local"
    remote_url: str | None = None
    """URL of the DVC remote; unset: ``ATTESTFLOW_DVC_REMOTE_URL``, the repo's remote, the workspace's."""
    push: bool = True


class ValidateDataConfig(StageConfig):
    """Great Expectations suite that the data must pass, and the engine that runs it."""

    suite: Path
    engine: Literal["auto", "pandas", "chunked", "spark"] = "auto"
    """``pandas`` (whole table in memory), ``chunked`` (CSV in row chunks, bounded memory), ``spark``
    (GX's Spark datasource; needs the ``spark`` extra), ``auto``: chunked above ``auto_chunked_mb``."""
    chunk_rows: int = Field(500_000, ge=1)
    """Rows per chunk of the chunked engine (about 0.4 GB peak for the credit data's 9 columns)."""
    auto_chunked_mb: float = Field(256.0, ge=0)
    """``auto`` validates files larger than this chunked, smaller ones as one table."""
    spark_master: str = "local[2]"
    """Spark master of the session the spark engine starts when none is running."""
    spark_conf: dict[str, str] = Field(default_factory=dict)
    """Extra Spark settings for that session (e.g. ``spark.driver.memory``)."""


class ModelConfig(Settings):
    """Which kind of model this is: the adapter that knows how to build, feed and export it."""

    adapter: str = "tabular"
    """A shipped adapter (``tabular``, ``text_classifier``) or ``package.module:ClassName``."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Adapter-specific settings, checked by the adapter (e.g. ``max_length`` for text)."""
    warm_start: Literal["none", "champion"] = "none"
    """``champion``: start from the current champion's fine-tuned weights when there is one."""


class FineTuneConfig(StageConfig):
    """Fine-tuning of the base checkpoint."""

    base_checkpoint: Path | None = None
    """Base weights (a safetensors file or a model folder); unset: the adapter's default."""
    epochs: int = Field(6, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    """Mixed precision (bf16 autocast) when training on CUDA; ignored on the CPU."""
    grad_accum_steps: int = Field(1, ge=1)
    """Batches whose gradients are summed before each optimizer step."""
    num_workers: int = Field(0, ge=0)
    """Data loader worker processes (0: batches are made in the training process)."""
    compile: bool = False
    """Run the model through ``torch.compile``."""
    checkpoint_every: int = Field(0, ge=0)
    """Optimizer steps between mid-epoch checkpoints; 0: a checkpoint at the end of each epoch only."""
    background_checkpoint_mb: float = Field(16.0, ge=0)
    """Checkpoints of at least this many MB are written by a background thread while training goes on;
    smaller ones are written before it goes on (a thread's Python work would slow a small model's steps
    more than the write costs). 0: every checkpoint in the background."""
    processes: int = Field(1, ge=1)
    """Training processes on this node (one per GPU); above 1 the stage runs under ``torchrun`` with DDP."""
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


class ExplainConfig(StageConfig):
    """Stage `explain`: attributions of the exported model, global and for a few sampled held-out rows."""

    enabled: bool = True
    rows: int = Field(256, ge=1)
    """Held-out rows the global attributions are averaged over."""
    examples: int = Field(3, ge=0)
    """Sampled rows whose own attributions are kept and shown."""
    seed: int = 0


class ModelCardConfig(Settings):
    """The human-written sections of the model card (intended use, limitations, ...), versioned with the code."""

    path: Path = Path("configs/model_card.yaml")


class ComplianceConfig(Settings):
    """The release's risk tier, and the control mappings `attestflow report` and the tier's refusals read."""

    risk_tier: Literal["minimal", "limited", "high"] = "limited"
    """``high`` makes the controls its mapping marks required: a release that cannot meet one refuses before training."""
    mappings: Path = Path("configs/compliance")


class SignConfig(StageConfig, KeySpec):
    """Signing of the release bundle and its provenance."""

    allow_dirty: bool = False
    """Release from a work tree with uncommitted changes (recorded in the provenance)."""
    require_signed_commit: bool = False
    """Refuse a release whose commit is not signed by an allowed SSH key (`attestflow check`'s
    ``commits.allowed_signers``): set by an environment's ``require_signed_commits``."""
    builder_id: str = "https://attestflow.dev/builders/prefect-release-flow@v1"

    def key_spec(self) -> KeySpec:
        """The key part of this section (what `attestflow.signers.signer_for` takes)."""
        return KeySpec(
            private_key=self.private_key,
            public_key=self.public_key,
            secret_block=self.secret_block,
            pkcs11_uri=self.pkcs11_uri,
        )


class RegisterConfig(StageConfig):
    """MLflow registration."""

    tracking_uri: str | None = None
    """MLflow tracking (and registry) URI; unset uses SQLite in the workspace."""
    experiment: str = "attestflow"


def task_runner_class(path: str) -> type[TaskRunner[Any]]:
    """The Prefect TaskRunner class at the import path ``package.module:ClassName``.

    Raises ValueError (which validation reports as one line naming the key) when the path is
    malformed, its module cannot be imported, or what it names is not a TaskRunner.
    """
    from prefect.task_runners import TaskRunner

    module_name, sep, attr = path.partition(":")
    if not (sep and module_name and attr):
        raise ValueError(
            "expected 'threads' or the import path 'package.module:ClassName' of a Prefect TaskRunner"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import {module_name!r} ({e}); is its package installed?") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, TaskRunner)):
        raise ValueError(f"{module_name}:{attr} is not a Prefect TaskRunner class")
    return cls


class GatesConfig(StageConfig):
    """The gate suite: the versioned policy file that says which gates run and their thresholds,
    and the Prefect task runner that evaluates the gates of a release side by side."""

    policy: Path = Path("configs/gates.yaml")
    task_runner: str = "threads"
    """``threads`` (a thread pool of `max_workers`), or the import path of any Prefect TaskRunner,
    e.g. ``prefect_dask:DaskTaskRunner`` or ``prefect_ray:RayTaskRunner``, made with `task_runner_options`."""
    max_workers: int = Field(4, ge=1, le=256)
    """Threads of the ``threads`` runner."""
    task_runner_options: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the import-path task runner's class, e.g. ``{address: tcp://scheduler:8786}``."""

    @field_validator("task_runner")
    @classmethod
    def _resolves(cls, value: str) -> str:
        if value != "threads":
            task_runner_class(value)  # refused at load time, not after training
        return value

    @model_validator(mode="after")
    def _runner_can_be_made(self) -> GatesConfig:
        if self.task_runner == "threads" and self.task_runner_options:
            raise ValueError(
                "task_runner_options are for an import-path task_runner; threads take max_workers"
            )
        if self.task_runner != "threads":
            self.make_task_runner()
        return self

    def make_task_runner(self) -> TaskRunner[Any]:
        """A new, not yet started task runner as configured."""
        if self.task_runner == "threads":
            from prefect.task_runners import ThreadPoolTaskRunner

            return ThreadPoolTaskRunner(max_workers=self.max_workers)
        cls = task_runner_class(self.task_runner)
        try:
            return cls(**self.task_runner_options)
        except TypeError as e:
            raise ValueError(f"task_runner_options do not fit {self.task_runner}: {e}") from None


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
    quality: bool = False
    """Also compare quality on the sample's labelled rows (the regression gate's paired bootstrap)."""


class DriftConfig(StageConfig):
    """When a new data snapshot counts as drifted from the champion's training data."""

    psi_threshold: float = Field(0.2, gt=0)
    """Population stability index of a feature above which it has drifted (0.1-0.25 is the usual band)."""
    ks_threshold: float = Field(0.15, gt=0, le=1)
    """Two-sample Kolmogorov-Smirnov statistic of a feature above which it has drifted."""
    label_shift_threshold: float = Field(0.1, gt=0, le=1)
    """Total variation distance between the label distributions above which the labels have drifted."""
    bins: int = Field(10, ge=2, le=100)


class AuditConfig(Settings):
    """Where the audit log lives (`attestflow.audit_store.audit_location`), shared by every worker."""

    location: str | None = None
    """A folder, a ``.jsonl`` file or ``s3://BUCKET/PREFIX/``; unset: ``$ATTESTFLOW_AUDIT_LOG``, else the workspace."""


class CacheConfig(Settings):
    """Content-keyed caching of the pure stages (validate_data, fine_tune, export_onnx, validate_onnx)."""

    enabled: bool = True
    """A re-run with the same data, config and code reuses those stages' results (files re-checked)."""


# The section `register` shares its name with ABCMeta.register of the model class; the
# instance attribute is what is meant, so pydantic's shadowing warning is noise here. It is
# silenced while this one class is defined, not for the process that imports it.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)

    class ReleaseConfig(Settings):
        """The whole release: one section per stage."""

        workspace: Path = Path(".attestflow")
        model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
        data: DataConfig
        model: ModelConfig = ModelConfig()
        snapshot: SnapshotConfig = SnapshotConfig()
        validate_data: ValidateDataConfig
        fine_tune: FineTuneConfig
        export_onnx: ExportOnnxConfig = ExportOnnxConfig()
        validate_onnx: ValidateOnnxConfig = ValidateOnnxConfig()
        explain: ExplainConfig = ExplainConfig()
        model_card: ModelCardConfig = ModelCardConfig()
        compliance: ComplianceConfig = ComplianceConfig()
        sign: SignConfig = SignConfig()
        register: RegisterConfig = RegisterConfig()
        gates: GatesConfig = GatesConfig()
        approve: ApproveConfig = ApproveConfig()
        promote: PromoteConfig = PromoteConfig()
        canary: CanaryConfig = CanaryConfig()
        drift: DriftConfig = DriftConfig()
        cache: CacheConfig = CacheConfig()
        audit: AuditConfig = AuditConfig()
        environment: str | None = Field(None, pattern=r"^[a-z][a-z0-9_-]*$")
        """The environment released into (`attestflow.environments.apply_environment`); unset: none."""

        def digest(self) -> Digest:
            """SHA-256 of the validated configuration as canonical JSON, credentials redacted (as written)."""
            return json_digest(redact_json(self.model_dump(mode="json")))


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
    raw = read_yaml(path, "config file") or {}
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
