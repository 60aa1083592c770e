"""The release flow: data snapshot -> validated, fine-tuned, exported, registered, gated model.

This module only composes. `release` builds the release context once (config, workspace,
identity, key, audit log: `attestflow.context`) and hands it to `run_release`, the body,
which reads stage by stage: each stage is a task from `tasks/`, run the way the `Invoke` it
is given says (`flows.stages.stage` here: retries, delay, timeout and cache from the stage's
config section; a plain call in the benchmark's bare script), and handed paths, URIs and
digests from the stages before it. Audit entries come from the records themselves; the gate
verdict is signed and added to the version's evidence whatever it says (`flows.evidence`), and
so is the model card made from it (`tasks.model_card`). A re-run that registers the version
already serving, its evidence verified under the current policy (`attestflow.unchanged`), stops
after registration: an unchanged release. A
stage that says no raises `GateFailedError`; bad input raises `BadInputError`; neither is retried.
Whatever stops a release is in the audit log: ``release_refused`` when the promotion said no,
else ``release_failed`` with the stage it stopped in (`attestflow.failures`).
"""

from __future__ import annotations

from dataclasses import replace

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from attestflow.context import ReleaseContext, open_release
from attestflow.errors import GateFailedError
from attestflow.evidence import model_card_statement, verification_summary
from attestflow.failures import failure_recorded
from attestflow.outcomes import ReleaseSummary
from attestflow.records import AuditEvent, write_json
from attestflow.redact import reveal_overrides, scrubbed
from attestflow.unchanged import unchanged_release
from flows.artifacts import publish_attributions, publish_lineage
from flows.evidence import attest_evidence
from flows.heartbeat import flow_heartbeats
from flows.promotion import promote_release
from flows.stages import Invoke, StageTracker, environment_tags, resumable, run_name, stage
from tasks.explain import explain_task
from tasks.export_onnx import export_onnx_task
from tasks.fine_tune import fine_tune_task
from tasks.gates import run_gates_task
from tasks.gates.report import publish_gates_task
from tasks.model_card import model_card_task
from tasks.register import register_task
from tasks.sign import sign_task
from tasks.snapshot import snapshot_task
from tasks.validate_data import validate_data_task
from tasks.validate_onnx import validate_onnx_task
from tasks.warm_start import warm_start_task


def run_release(ctx: ReleaseContext, invoke: Invoke) -> ReleaseSummary:
    """The release, stage by stage; raises `GateFailedError` when a stage, a gate or the promotion says no.

    A release that stops is audited as ``release_failed`` with the stage it stopped in, unless
    the promotion's refusal already is (``release_refused``).
    """
    tracked = StageTracker(invoke)
    with failure_recorded(ctx.audit, ctx.cfg.model_name, ctx.actor, ctx.flow_run_id, lambda: tracked.current):
        return _release_body(ctx, tracked)


def _release_body(ctx: ReleaseContext, invoke: Invoke) -> ReleaseSummary:
    """The stages, in order, each handed what the stages before it returned."""
    cfg, ws, out_dir, uri = ctx.cfg, ctx.ws, ctx.release_dir, ctx.tracking_uri
    snap = invoke(snapshot_task, cfg.snapshot)(cfg.snapshot, cfg.data.path, ws, out_dir)
    ctx.record(snap)
    cache = ctx.stage_cache(snap)
    checked = invoke(validate_data_task, cfg.validate_data, cache)(cfg.validate_data, snap.data_path, out_dir)
    ctx.record(checked)
    if not checked.success:
        raise GateFailedError([f"data validation failed: {', '.join(checked.failed)}"])
    warm = (
        invoke(warm_start_task, cfg.fine_tune)(cfg.model_name, cfg.promote.alias, uri, ctx.public_key, ws)
        if cfg.model.warm_start == "champion"
        else None
    )
    trained = invoke(fine_tune_task, cfg.fine_tune, cache)(
        cfg, ws, snap.dvc_md5, uri, ctx.run_tags(snap), out_dir, warm
    )
    exported = invoke(export_onnx_task, cfg.export_onnx, cache)(
        cfg.export_onnx, trained.checkpoint_path, out_dir, cfg.data, cfg.model
    )
    checked_onnx = invoke(validate_onnx_task, cfg.validate_onnx, cache)(
        cfg.validate_onnx, cfg.data, exported.onnx_path, trained.checkpoint_path, cfg.model
    )
    explained = (
        invoke(explain_task, cfg.explain, cache)(
            cfg.explain, cfg.data, trained.checkpoint_path, out_dir, cfg.model
        )
        if cfg.explain.enabled
        else None
    )
    publish_attributions(cfg.model_name, explained)
    signed = invoke(sign_task, cfg.sign, cache)(
        cfg,
        snap,
        trained,
        exported,
        checked_onnx,
        ws=ws,
        out_dir=out_dir,
        invocation=ctx.invocation,
        explained=explained,
    )
    if not signed.bundle_dir.is_relative_to(out_dir):  # served from the stage cache, verified on the hit
        ctx.record(
            AuditEvent(
                "served_from_cache",
                {"stage": "sign", "release_key": signed.release_key, "bundle": str(signed.bundle_dir)},
            )
        )
    registered = invoke(register_task, cfg.register)(
        signed,
        trained,
        checked_onnx,
        model_name=cfg.model_name,
        tags=ctx.release_tags(snap, trained, exported, checked_onnx, signed),
        tracking_uri=uri,
    )
    ctx.record(registered, bundle_sha256=registered.bundle_sha256)
    made = ReleaseSummary(
        model_name=cfg.model_name,
        release_dir=out_dir,
        snapshot=snap,
        validation=checked,
        training=trained,
        onnx=exported,
        onnx_validation=checked_onnx,
        signature=signed,
        registration=registered,
        flow_run_id=ctx.flow_run_id,
    )
    # Already the champion, its evidence verified under this policy: nothing after this would change.
    unchanged = unchanged_release(ctx, registered)
    if unchanged is not None:
        return _finished(replace(made, unchanged=unchanged), unchanged.message)
    gates = invoke(run_gates_task, cfg.gates)(
        ctx.policy,
        exported.onnx_path,
        cfg.data,
        **ctx.gate_inputs(trained, checked, registered, signed.bundle_dir, explained),
    )
    gates_json = invoke(publish_gates_task, cfg.gates)(gates, registered, out_dir=out_dir, tracking_uri=uri)
    ctx.record(gates, version=registered.version)
    verdict = verification_summary(gates, registered, signed, gates_json, policy_uri=str(cfg.gates.policy))
    attest_evidence(ctx, invoke, verdict, registered, attach=gates_json)
    card = invoke(model_card_task, cfg.register)(
        cfg, ctx.policy, snap, trained, exported, signed, registered, gates, out_dir=out_dir, tracking_uri=uri
    )
    card_stmt = model_card_statement(card.card, card.markdown_path, signed.onnx_digest)
    attest_evidence(ctx, invoke, card_stmt, registered, attach=card.markdown_path)
    outcome = promote_release(ctx, invoke, registered, signed, gates)
    summary = _finished(
        replace(
            made,
            gates=gates,
            approval=outcome.approval,
            promotion=outcome.promotion,
            canary=outcome.canary,
        ),
        "released" if outcome.released else "refused",
    )
    ctx.record(outcome)
    if not outcome.released:
        raise GateFailedError(outcome.failures, audited=True)
    return summary


def _finished(summary: ReleaseSummary, outcome: str) -> ReleaseSummary:
    """Write the summary into the release folder and publish its lineage."""
    write_json(summary.release_dir / "release.json", summary)
    publish_lineage(summary, outcome)
    return summary


@flow(name="release", log_prints=True, flow_run_name=run_name)
@scrubbed
def release(
    config_path: str = "configs/release.yaml",
    overrides: list[str] | None = None,
    environment: str | None = None,
    environments_path: str = "configs/environments.yaml",
) -> ReleaseSummary:
    """Release a model from the configured data snapshot; raises if any stage says no.

    `overrides` are run parameters, which Prefect stores: the CLI passes them with credentials
    masked and hands the originals over through the environment (`attestflow.redact`). With
    `environment`, the release goes into that environment of `environments_path`.
    """
    overrides = reveal_overrides(overrides or [])
    with flow_heartbeats(), environment_tags(environment):
        ctx = open_release(
            config_path, overrides, str(flow_run.id or "local"), environment, environments_path
        )
        # A release that may be suspended keeps every stage's result, so that its resumption reuses them.
        summary = run_release(
            ctx, resumable(ctx.ws.stage_cache) if ctx.cfg.approve.wait == "suspend" else stage
        )
    if summary.unchanged is not None:
        get_run_logger().info("%s: %s", ctx.cfg.model_name, summary.unchanged.message)
    else:
        get_run_logger().info(
            "released %s version %s as %s",
            ctx.cfg.model_name,
            summary.registration.version,
            ctx.cfg.promote.alias,
        )
    return summary
