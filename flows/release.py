"""The release flow: data snapshot -> validated, fine-tuned, exported, registered, gated model.

This module only composes: each stage is a task from `tasks/`, given its retries, retry
delay and timeout from its config section, and handed paths, URIs and digests from the
stages before it. A stage that says no raises `GateFailedError`; bad input raises
`BadInputError`; neither is retried, since trying again cannot change the answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from prefect import Task, flow, get_run_logger
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.transactions import transaction

from attestflow.audit import AuditLog
from attestflow.caching import StageCache, code_version
from attestflow.config import StageConfig, load_config
from attestflow.errors import BadInputError, GateFailedError
from attestflow.keys import trusted_public_key
from attestflow.lineage import code_revision, triggered_by
from attestflow.policy import load_policy
from attestflow.records import ReleaseSummary, write_json
from attestflow.tracking import tracking_uri
from attestflow.workspace import Workspace
from flows.approval import approve
from flows.artifacts import publish_lineage
from tasks.canary import canary_task
from tasks.export_onnx import export_onnx_task
from tasks.fine_tune import fine_tune_task
from tasks.gates import run_gates_task
from tasks.gates.report import publish_gates_task
from tasks.promote import promote_task
from tasks.register import register_task, release_tags
from tasks.sign import sign_task
from tasks.snapshot import snapshot_task
from tasks.validate_data import validate_data_task
from tasks.validate_onnx import validate_onnx_task
from tasks.warm_start import warm_start_task

T = TypeVar("T", bound=Task[Any, Any])
CODE_ROOT = Path(__file__).resolve().parents[1]


def _retryable(task: Task[Any, Any], task_run: Any, state: Any) -> bool:
    """Retry on infrastructure errors, never on bad input or a gate that said no."""
    exc = state.result(raise_on_failure=False)
    return not isinstance(exc, BadInputError | GateFailedError)


def stage(t: T, cfg: StageConfig, cache: StageCache | None = None) -> T:
    """The task `t` with the retries, retry delay and timeout of its config section.

    With `cache`, its result is cached by content (see `attestflow.caching`); else never.
    """
    caching = cache.task_options(t.name) if cache else {"cache_policy": NO_CACHE}
    return t.with_options(  # type: ignore[return-value]
        retries=cfg.retries,
        retry_delay_seconds=cfg.retry_delay_s,
        timeout_seconds=cfg.timeout_s,
        retry_condition_fn=_retryable,
        **caching,
    )


@flow(name="release", log_prints=True)
def release(config_path: str = "configs/release.yaml", overrides: list[str] | None = None) -> ReleaseSummary:
    """Release a model from the configured data snapshot; raises if any stage says no."""
    log = get_run_logger()
    started_on = datetime.now(UTC).isoformat(timespec="seconds")
    cfg = load_config(config_path, overrides)
    policy = load_policy(cfg.gates.policy)
    ws = Workspace.at(cfg.workspace)
    ws.activate()
    run_id = str(flow_run.id or "local")
    revision = code_revision(CODE_ROOT)
    if (revision.dirty or revision.commit == "unknown") and not cfg.sign.allow_dirty:
        state = "has uncommitted changes" if revision.dirty else "is not a git checkout"
        raise GateFailedError(
            [f"the code at {CODE_ROOT} {state}; commit first, or set sign.allow_dirty=true"]
        )
    audit = AuditLog.of(ws.root)
    who = triggered_by()
    audit.append(
        "run_started", model=cfg.model_name, actor=who, flow_run_id=run_id, config_sha256=cfg.digest().value
    )
    out_dir = ws.releases / cfg.model_name / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(cfg.register.tracking_uri, ws)
    write_json(out_dir / "config.json", cfg.model_dump(mode="json"))

    snap = stage(snapshot_task, cfg.snapshot)(cfg.snapshot, cfg.data.path, ws, out_dir)
    log.info("snapshot %s: DVC md5 %s, %d file(s)", snap.data_path.name, snap.dvc_md5, snap.files)
    audit.append(
        "snapshot",
        model=cfg.model_name,
        flow_run_id=run_id,
        dvc_md5=snap.dvc_md5,
        manifest_sha256=snap.manifest_digest.value,
    )

    cache = (
        StageCache(ws.stage_cache, code_version(CODE_ROOT, revision), snap.dvc_md5, snap.data_path)
        if cfg.cache.enabled
        else None
    )
    checked = stage(validate_data_task, cfg.validate_data, cache)(cfg.validate_data, snap.data_path, out_dir)
    audit.append(
        "data_validation",
        model=cfg.model_name,
        flow_run_id=run_id,
        passed=checked.success,
        failed=checked.failed,
    )
    if not checked.success:
        raise GateFailedError([f"data validation failed: {', '.join(checked.failed)}"])

    run_tags = {"prefect_flow_run_id": run_id, "data_md5": snap.dvc_md5, "git_commit": revision.commit}
    warm = None
    if cfg.model.warm_start == "champion":
        warm = stage(warm_start_task, cfg.fine_tune)(
            cfg.model_name, cfg.promote.alias, uri, trusted_public_key(cfg.sign.public_key, ws.root), ws
        )
        log.info(
            "warm start: %s", f"from {warm.model_uri}" if warm else "no champion yet, from the base model"
        )
    trained = stage(fine_tune_task, cfg.fine_tune, cache)(cfg, ws, snap.dvc_md5, uri, run_tags, out_dir, warm)
    exported = stage(export_onnx_task, cfg.export_onnx, cache)(
        cfg.export_onnx, trained.checkpoint_path, out_dir, cfg.data, cfg.model
    )
    checked_onnx = stage(validate_onnx_task, cfg.validate_onnx, cache)(
        cfg.validate_onnx, cfg.data, exported.onnx_path, trained.checkpoint_path, cfg.model
    )
    invocation = {
        "config_path": str(config_path),
        "overrides": list(overrides or []),
        "flow_run_id": run_id,
        "started_on": started_on,
        "triggered_by": who,
    }
    signed = stage(sign_task, cfg.sign)(
        cfg, ws, out_dir, snap, trained, exported, checked_onnx, revision, invocation
    )
    tags = release_tags(cfg, snap, trained, exported, checked_onnx, signed, revision, run_id, who, policy)
    registered = stage(register_task, cfg.register)(
        cfg.model_name, signed.bundle_dir, cfg.data, trained.mlflow_run_id, uri, checked_onnx, tags, cfg.model
    )
    audit.append(
        "registration",
        model=cfg.model_name,
        version=registered.version,
        reused=registered.reused,
        bundle_sha256=signed.bundle_digest.value,
    )
    if registered.reused:
        log.info(
            "these inputs were already released as version %s; not registering again", registered.version
        )
    gates = stage(run_gates_task, cfg.gates)(
        policy,
        exported.onnx_path,
        cfg.data,
        model_name=cfg.model_name,
        tracking_uri=uri,
        provider=cfg.validate_onnx.provider,
        checkpoint=trained.checkpoint_path,
        data_validation=checked,
        model_label=registered.model_uri,
        public_key=trusted_public_key(cfg.sign.public_key, ws.root),
        model=cfg.model,
        task_runner=cfg.gates.make_task_runner(),
    )
    gates_json = write_json(out_dir / "gates.json", gates)
    stage(publish_gates_task, cfg.gates)(gates, gates_json, registered, uri)
    log.info("gates took %.1f s: %s", gates.seconds, "passed" if gates.passed else "FAILED")
    for g in gates.decisions:
        audit.append(
            "gate",
            model=cfg.model_name,
            version=registered.version,
            gate=g.gate,
            metric=g.metric,
            passed=g.passed,
            margin=g.margin,
            reason=g.reason,
            policy=g.policy_digest,
        )

    promotion = canary_result = approval = None
    failed = gates.failures()
    if not failed:
        approval = approve(cfg.approve, cfg.model_name, registered.version, signed.bundle_digest.value, audit)
        if not approval.approved:
            failed.append(f"promotion not approved by {approval.approver}: {approval.reason}")
    if not failed:
        public_key = trusted_public_key(cfg.sign.public_key, ws.root)
        try:
            with transaction() as txn:
                promotion = stage(promote_task, cfg.promote)(
                    cfg.model_name,
                    registered.version,
                    cfg.promote.alias,
                    cfg.promote.previous_alias,
                    uri,
                    public_key,
                    audit,
                    run_id,
                )
                try:
                    canary_result = stage(canary_task, cfg.canary)(
                        cfg.canary,
                        cfg.data,
                        cfg.model_name,
                        registered.version,
                        promotion.previous_version,
                        uri,
                        public_key,
                        cfg.model,
                    )
                except GateFailedError as e:
                    txn.set("rollback_reason", "; ".join(e.reasons))
                    audit.append(
                        "canary",
                        model=cfg.model_name,
                        version=registered.version,
                        passed=False,
                        reason=e.reasons,
                    )
                    raise
                audit.append(
                    "canary",
                    model=cfg.model_name,
                    version=registered.version,
                    passed=True,
                    reason=canary_result.reason,
                )
        except GateFailedError as e:
            failed += e.reasons
            if promotion is not None:
                failed.append(
                    f"{cfg.promote.alias} rolled back to v{promotion.previous_version or ' (unset)'}"
                )
            promotion = None
    summary = ReleaseSummary(
        model_name=cfg.model_name,
        release_dir=out_dir,
        snapshot=snap,
        validation=checked,
        training=trained,
        onnx=exported,
        onnx_validation=checked_onnx,
        signature=signed,
        registration=registered,
        gates=gates,
        approval=approval,
        promotion=promotion,
        canary=canary_result,
        flow_run_id=run_id,
    )
    write_json(out_dir / "release.json", summary)
    publish_lineage(summary, "refused" if failed else "released")
    if failed:
        if not any("rolled back" in r for r in failed):
            failed.append(f"{cfg.promote.alias} not moved")
        audit.append("release_refused", model=cfg.model_name, version=registered.version, reasons=failed)
        raise GateFailedError(failed)
    audit.append("release_completed", model=cfg.model_name, version=registered.version, flow_run_id=run_id)
    log.info("released %s version %s as %s", cfg.model_name, registered.version, cfg.promote.alias)
    return summary
