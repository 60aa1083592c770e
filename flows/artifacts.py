"""What the Prefect run page shows of a release: its lineage and its attributions, as markdown artifacts.

Prefect's open-source UI has no asset lineage graph, so each release publishes the chain
data snapshot -> validation -> training -> ONNX -> signature -> registry -> gates -> approval
-> promotion -> canary under a key stable per model (``lineage-<model>``), so that the
Artifacts page keeps the history of every release of that model.
"""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from attestflow.artifacts import artifact_key
from attestflow.explain import read_attributions
from attestflow.explain_view import attributions_markdown
from attestflow.outcomes import ReleaseSummary
from attestflow.progress import in_prefect_run
from attestflow.records import ExplanationRecord
from attestflow.redact import redact
from attestflow.verify import Check


def lineage_markdown(summary: ReleaseSummary, outcome: str) -> str:
    """The release's lineage as markdown, with the ids to open it in MLflow and DVC."""
    s, t, o, g, reg = summary.snapshot, summary.training, summary.onnx, summary.gates, summary.registration
    approval = summary.approval
    promo = summary.promotion
    canary = summary.canary
    rows = [
        (
            "data snapshot",
            f"`{s.data_path.name}`, DVC md5 `{s.dvc_md5}` ({s.dvc_file.name}), remote `{s.remote_url}`",
        ),
        (
            "validation",
            f"{summary.validation.evaluated} expectations, {'passed' if summary.validation.success else 'FAILED'}",
        ),
        (
            "training",
            f"MLflow run `{t.mlflow_run_id}`, {t.device} {t.precision}, resumed from epoch {t.resumed_from_epoch}",
        ),
        (
            "checkpoints",
            f"base `{t.base_checkpoint_digest.value[:16]}`, final `{t.checkpoint_digest.value[:16]}`",
        ),
        ("ONNX", f"sha256 `{o.digest.value}`, opset {o.opset}, ran on {summary.onnx_validation.provider}"),
        (
            "signature",
            f"bundle `{summary.signature.bundle_digest.value[:16]}`, key `{summary.signature.key_id}`",
        ),
        ("registry", f"`{reg.model_uri}`{' (same inputs, reused)' if reg.reused else ''}"),
        (
            "gates",
            f"{'passed' if g.passed else 'FAILED'}: {len(g.decisions)} decisions, policy `{g.policy_digest.value[:12]}`"
            if g
            else "not run again: the version's signed verdict under this policy verified",
        ),
        ("approval", f"{approval.approver}: {approval.reason}" if approval else "not asked"),
        (
            "promotion",
            f"@{promo.alias} -> v{promo.version} "
            + (f"(was v{promo.previous_version})" if promo.previous_version else "(the first)")
            if promo
            else "none",
        ),
        ("canary", canary.reason if canary else "not run"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (
        f"# Release of {summary.model_name}: {outcome}\n\n| stage | evidence |\n|---|---|\n{table}\n\n"
        f"`attestflow lineage {reg.model_uri}` and `attestflow verify {reg.model_uri}` go further.\n"
    )


def publish_lineage(summary: ReleaseSummary, outcome: str) -> None:
    """Create the release's lineage artifact on the current flow run (nothing outside one)."""
    if not in_prefect_run():
        return
    create_markdown_artifact(
        key=artifact_key(summary.model_name, "lineage"),
        markdown=redact(lineage_markdown(summary, outcome)),
        description=f"lineage of {summary.registration.model_uri}",
    )


def publish_checks(model_name: str, title: str, checks: list[Check]) -> None:
    """A table of checks (``ok``/``NO``, name, detail) on the run page, keyed per model."""
    if not in_prefect_run():
        return
    from prefect.artifacts import create_table_artifact

    rows = [{"result": "ok" if c.ok else "NO", "check": c.name, "detail": redact(c.detail)} for c in checks]
    create_table_artifact(
        table=rows or [{"result": "ok", "check": "(none)", "detail": "nothing to check"}],
        key=artifact_key(model_name, "checks"),
        description=redact(title),
    )


def publish_attributions(model_name: str, explained: ExplanationRecord | None) -> None:
    """The model's attributions (chart and sampled rows) on the current flow run, keyed per model."""
    if explained is None or not in_prefect_run():
        return
    att = read_attributions(explained.path)
    if att is None:
        return
    markdown, description = attributions_markdown(model_name, att)
    create_markdown_artifact(
        key=artifact_key(model_name, "attributions"), markdown=redact(markdown), description=description
    )
