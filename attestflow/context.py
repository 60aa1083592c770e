"""The release context: what the stages of one release share, built once when it starts.

Like a set of dagster resources, it holds the validated config and gate policy, the
activated workspace, how the release was invoked and by whom, the code revision, the release
folder, the MLflow tracking URI, the public key that verification trusts and the audit log.
Stages are handed the pieces they need from it and never re-derive them. The context itself
is never a stage's argument: a cached stage's key must not see the flow run id or the release
folder, and a stage may run in another process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from attestflow.alias_drift import refuse_on_drift
from attestflow.approval import check_approvers
from attestflow.audit import AuditLog
from attestflow.bundle import AIBOM
from attestflow.caching import StageCache
from attestflow.checks.commits import release_commit_signed
from attestflow.checks.runner import release_preflight
from attestflow.compliance.tier import check_risk_tier
from attestflow.config import ReleaseConfig
from attestflow.environments import release_config
from attestflow.errors import ConfigError, GateFailedError
from attestflow.failures import failure_recorded
from attestflow.keys import trusted_public_key
from attestflow.lineage import CodeRevision, actor, code_revision
from attestflow.policy import GatePolicy, load_policy
from attestflow.preflight import check_release_data
from attestflow.progress import run_logger
from attestflow.records import (
    Audited,
    DataValidationRecord,
    ExplanationRecord,
    Invocation,
    OnnxExportRecord,
    OnnxValidationRecord,
    RegistrationRecord,
    SignatureRecord,
    SnapshotRecord,
    TrainingRecord,
    write_json,
)
from attestflow.redact import hide_overrides, redact
from attestflow.registry import Registry
from attestflow.settings import KeySpec
from attestflow.signers import Signer, check_key, signer_for
from attestflow.tracking import tracking_uri
from attestflow.workspace import Workspace

CODE_ROOT = Path(__file__).resolve().parents[1]
"""The work tree of the code that runs releases: its git revision goes into the provenance."""


@dataclass(frozen=True)
class ReleaseContext:
    """One release's config, resources and identity (see `open_release`)."""

    cfg: ReleaseConfig
    policy: GatePolicy
    ws: Workspace
    """The workspace, activated (Prefect, MLflow and DVC state point into it)."""
    invocation: Invocation
    release_dir: Path
    """``<workspace>/releases/<model>/<flow run id>``: this release's evidence."""
    tracking_uri: str
    audit: AuditLog

    @property
    def flow_run_id(self) -> str:
        return self.invocation.flow_run_id

    @property
    def revision(self) -> CodeRevision:
        return self.invocation.revision

    @property
    def actor(self) -> str:
        """Who or what started the release, as ``kind:name``."""
        return self.invocation.triggered_by

    @cached_property
    def public_key(self) -> Path:
        """The public key verification trusts: resolved at first use, since a first release creates it."""
        return trusted_public_key(self.cfg.sign.public_key, self.ws.root)

    @property
    def key(self) -> KeySpec:
        """The release key (the `sign` stage's), as stages that sign are handed it: they build its signer."""
        return self.cfg.sign.key_spec()

    def signer(self) -> Signer:
        """The release key's signer, checked to pair with its public key, for signing in the flow itself."""
        return signer_for(self.key, self.ws.root)

    def record(self, rec: Audited, *, version: str | None = None, **details: Any) -> None:
        """Append what `rec` says of itself to the audit log (and the run's log), with `details` added."""
        log = run_logger(__name__)
        env = {"environment": self.cfg.environment} if self.cfg.environment else {}
        for e in rec.audit_events():
            run = {"flow_run_id": self.flow_run_id} if e.names_run else {}
            entry = self.audit.append(
                e.event,
                model=self.cfg.model_name,
                version=e.version or version,
                actor=self.actor,
                **e.details,
                **details,
                **run,
                **env,
            )
            log.info("%s of %s v%s: %s", e.event, entry["model"], entry["version"] or "-", entry["details"])

    def stage_cache(self, snap: SnapshotRecord) -> StageCache | None:
        """The content-keyed cache of this release's pure stages, unless caching is off."""
        if not self.cfg.cache.enabled:
            return None
        return StageCache(self.ws.stage_cache, self.revision.version, snap.dvc_md5, snap.data_path)

    def run_tags(self, snap: SnapshotRecord) -> dict[str, str]:
        """Tags of the MLflow training run: which flow run, data and commit it belongs to."""
        return {
            "prefect_flow_run_id": self.flow_run_id,
            "data_md5": snap.dvc_md5,
            "git_commit": self.revision.commit,
        }

    def gate_inputs(
        self,
        trained: TrainingRecord,
        data_validation: DataValidationRecord,
        registered: RegistrationRecord,
        bundle: Path | None = None,
        explained: ExplanationRecord | None = None,
    ) -> dict[str, Any]:
        """The gate suite's keyword inputs beside the policy, the ONNX file and the data (`bundle`: the one registered)."""
        from attestflow.progress import in_prefect_run

        cfg = self.cfg
        return {
            "model_name": cfg.model_name,
            "tracking_uri": self.tracking_uri,
            "provider": cfg.validate_onnx.provider,
            "checkpoint": trained.checkpoint_path,
            "data_validation": data_validation,
            "model_label": registered.model_uri,
            "public_key": self.public_key,
            "model": cfg.model,
            "task_runner": cfg.gates.make_task_runner() if in_prefect_run() else None,
            "bom": bundle / AIBOM if bundle is not None and (bundle / AIBOM).is_file() else None,
            "attributions": explained.path if explained is not None else None,
        }

    def release_tags(
        self,
        snap: SnapshotRecord,
        trained: TrainingRecord,
        exported: OnnxExportRecord,
        checked: OnnxValidationRecord,
        signed: SignatureRecord,
    ) -> dict[str, str]:
        """The model version's tags: the digests that tie it to its inputs, its evidence and its run."""
        return {
            "data_md5": snap.dvc_md5,
            "data_manifest_sha256": snap.manifest_digest.value,
            "onnx_sha256": exported.digest.value,
            "config_sha256": self.cfg.digest().value,
            "git_commit": self.revision.commit,
            "git_dirty": str(self.revision.dirty).lower(),
            "prefect_flow_run_id": self.flow_run_id,
            **trained.start_tags(),
            "trained_from": trained.trained_from,
            "onnx_provider": checked.provider,
            "triggered_by": self.actor,
            "bundle_sha256": signed.bundle_digest.value,
            "signature_sha256": signed.signature_digest.value,
            "provenance_sha256": signed.provenance_digest.value,
            "signing_key_id": signed.key_id,
            "release_key": signed.release_key,
            "gate_policy_sha256": self.policy.digest().value,
            **({"environment": self.cfg.environment} if self.cfg.environment else {}),
        }


def open_release(
    config_path: str | Path,
    overrides: list[str] | None,
    flow_run_id: str,
    environment: str | None = None,
    environments_path: str | Path | None = None,
) -> ReleaseContext:
    """Run the release's preflight checks, load and check everything it needs, refuse uncommitted code, log its start.

    Activates the workspace, refuses while an alias of the model was moved outside attestflow
    (here rather than in the CLI's preflight, so that deployments and schedules refuse too),
    creates the release folder with the validated ``config.json`` in it, and appends
    ``run_started`` to the audit log. Once the config is loaded, a failure is audited as
    ``release_failed`` at stage ``start`` (`attestflow.failures`); a config that cannot be
    loaded names no workspace to record it in. With `environment`, the release goes into that
    environment of the file `environments_path` (`attestflow.environments`).
    """
    started_on = datetime.now(UTC).isoformat(timespec="seconds")
    cfg = release_config(config_path, overrides, environment, environments_path)
    ws = Workspace.at(cfg.workspace)
    audit = AuditLog.configured(cfg, ws.root)
    who = redact(actor())
    stage = "preflight"
    with failure_recorded(audit, cfg.model_name, who, flow_run_id, stage=lambda: stage):
        checked = release_preflight(
            cfg.snapshot.repo, CODE_ROOT
        )  # `attestflow check`'s release checks: before any work
        run_logger(__name__).info("preflight: %s", checked.summary())
        stage = "start"
        cfg, policy = _checked_inputs(cfg)
        ws.activate()
        shown, _ = hide_overrides(list(overrides or []))
        revision = _committed_code(cfg)
        invocation = Invocation(str(config_path), shown, flow_run_id, started_on, who, revision, checked)
        ctx = ReleaseContext(
            cfg=cfg,
            policy=policy,
            ws=ws,
            invocation=invocation,
            release_dir=ws.releases / cfg.model_name / flow_run_id,
            tracking_uri=tracking_uri(cfg.register.tracking_uri, ws),
            audit=audit,
        )
        _start(ctx)
        return ctx


def _checked_inputs(cfg: ReleaseConfig) -> tuple[ReleaseConfig, GatePolicy]:
    """The config and its gate policy, once the data, approvers and key pair they name are checked."""
    from attestflow.dataset import require_data_file  # brings torch, as the stages do

    policy = load_policy(cfg.gates.policy)
    check_approvers(cfg.approve, policy)
    check_risk_tier(cfg, policy)  # what the risk tier requires, before any data is read or model trained
    if "attribution" in policy.run and not cfg.explain.enabled:
        raise ConfigError(
            f"{cfg.gates.policy} runs the attribution gate but explain.enabled is false: "
            "enable the explain stage or take `attribution` out of the policy's run"
        )
    require_data_file(cfg.data.path)  # before DVC: `dvc add` of a folder rewrites the tracked .gitignore
    check_key(cfg.sign.key_spec(), Workspace.at(cfg.workspace).root)  # half a pair: before any stage runs
    cfg = check_release_data(cfg)  # the table read once: columns, classes, missing values, base shape
    return cfg, policy


def _committed_code(cfg: ReleaseConfig) -> CodeRevision:
    """The revision of the code that runs the release; uncommitted code is refused unless allowed."""
    revision = code_revision(CODE_ROOT)
    if (revision.dirty or revision.commit == "unknown") and not cfg.sign.allow_dirty:
        state = "has uncommitted changes" if revision.dirty else "is not a git checkout"
        raise GateFailedError(
            [f"the code at {CODE_ROOT} {state}; commit first, or set sign.allow_dirty=true"]
        )
    if cfg.sign.require_signed_commit:
        signed, detail = release_commit_signed(CODE_ROOT)
        if not signed:
            where = f"environment {cfg.environment}" if cfg.environment else "sign.require_signed_commit"
            raise GateFailedError(
                [f"{where} takes releases from signed commits only, and this one is not: {detail}"]
            )
    return revision


def _start(ctx: ReleaseContext) -> None:
    """Refuse while an alias drifted (audited as ``release_refused``), log the start, write ``config.json``."""
    cfg = ctx.cfg
    refuse_on_drift(
        "release",
        cfg.model_name,
        alias=cfg.promote.alias,
        previous_alias=cfg.promote.previous_alias,
        registry=Registry(ctx.tracking_uri),
        audit=ctx.audit,
    )
    ctx.audit.append(
        "run_started",
        model=cfg.model_name,
        actor=ctx.actor,
        flow_run_id=ctx.flow_run_id,
        config_sha256=cfg.digest().value,
        preflight=ctx.invocation.preflight.as_json() if ctx.invocation.preflight else None,
        **({"environment": cfg.environment} if cfg.environment else {}),
    )
    ctx.release_dir.mkdir(parents=True, exist_ok=True)
    write_json(ctx.release_dir / "config.json", cfg.model_dump(mode="json"))
