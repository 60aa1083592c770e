"""A model version's full lineage, gathered from the registry, its signed provenance and the audit log.

The chain runs: data snapshot (DVC md5, manifest) -> validation -> training run (MLflow run,
device, checkpoints) -> ONNX digest -> signature and provenance -> gate decisions ->
approval -> promotions. It can start from whatever the user has: a model URI, an ONNX
SHA-256, or a Prefect flow run id.

The signed statements the version carries are listed too, by folder: ``evidence/`` (those of
the environment it was released in) and, for a version promoted from another environment,
``environments/<env>/`` (the promotion naming the source environment, model and version, and
that environment's own gate verdict, approval and canary). They are shown as stored, not
verified: `attestflow verify` is what checks them.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from attestflow.audit import AuditLog
from attestflow.audit_store import audit_location
from attestflow.bundle import ENVIRONMENTS, EVIDENCE, PROVENANCE
from attestflow.checks.lockenv import ENVIRONMENT_DEPENDENCY
from attestflow.errors import BadInputError
from attestflow.provenance import byproduct
from attestflow.registry import MODEL_URI, PROMOTED_FROM, Registry
from attestflow.tracking import fluent_uri
from attestflow.verify import resolve_version

HEX64 = re.compile(r"^(sha256:)?[0-9a-f]{64}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def find_version(
    start: str, tracking_uri: str, model_name: str | None = None
) -> tuple[str, str, dict[str, str]]:
    """(name, version, tags) from a model URI, an ONNX SHA-256 or a Prefect flow run id."""
    if MODEL_URI.match(start):
        return resolve_version(start, tracking_uri)
    if HEX64.match(start):
        key, value = "onnx_sha256", start.removeprefix("sha256:")
    elif UUID.match(start):
        key, value = "prefect_flow_run_id", start
    else:
        raise BadInputError(f"{start!r} is neither a models:/ URI, an ONNX SHA-256 nor a Prefect flow run id")
    found = Registry(tracking_uri).find_versions(model_name, **{key: value})
    if not found:
        raise BadInputError(f"no registered model version has {key} {value}")
    return found[0].name, found[0].version, found[0].tags


def _provenance(name: str, version: str, tracking_uri: str) -> dict[str, Any] | None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp, fluent_uri(tracking_uri):
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(f"models:/{name}/{version}/{PROVENANCE}", dst_path=tmp)
            )
        except Exception:  # an old or foreign version without provenance
            return None
        envelope = json.loads(local.read_text())
    return dict(json.loads(base64.b64decode(envelope["payload"])))


def _statements(name: str, version: str, tracking_uri: str) -> dict[str, list[dict[str, Any]]]:
    """Folder (``evidence``, ``environments/<env>``) -> what each signed statement in it says, oldest first."""
    import mlflow

    found: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp, fluent_uri(tracking_uri):
        for folder in (EVIDENCE, ENVIRONMENTS):
            try:
                mlflow.artifacts.download_artifacts(f"models:/{name}/{version}/{folder}", dst_path=tmp)
            except Exception:  # noqa: S112 - a version without statements in that folder: nothing to list
                continue
        for path in sorted(Path(tmp).rglob("*.dsse.json")):
            try:
                stmt = json.loads(base64.b64decode(json.loads(path.read_text())["payload"]))
            except (ValueError, KeyError, TypeError):
                continue
            where = path.parent.relative_to(tmp).as_posix()
            found.setdefault(where, []).append(_said(path.name.split("-", 1)[0], stmt.get("predicate", {})))
    return {k: sorted(v, key=lambda s: str(s["time"])) for k, v in found.items()}


def _said(kind: str, p: dict[str, Any]) -> dict[str, Any]:
    """One statement's kind, time and decision, as lineage shows it."""
    said: dict[str, Any] = {"kind": kind, "time": p.get("timeVerified") or p.get("time")}
    if kind == "promotion":
        source, target = p.get("source", {}), p.get("target", {})
        said["result"] = (
            f"{source.get('env')}:{source.get('model')}/{source.get('version')} -> "
            f"{target.get('env')}:{target.get('model')}/{target.get('version')}"
        )
        said["by"] = ", ".join(p.get("approvers", []))
    else:
        said["result"] = p.get("verificationResult") or p.get("decision") or p.get("result")
        said["by"] = ", ".join(p.get("approvers") or [p.get("approver") or ""]).strip(", ")
    return said


def lineage(
    start: str,
    tracking_uri: str,
    workspace_root: Path,
    model_name: str | None = None,
    *,
    audit: AuditLog | None = None,
) -> dict[str, Any]:
    """The lineage of the model version that `start` names, as nested plain data.

    Its audit events come from `audit`; unset, from ``$ATTESTFLOW_AUDIT_LOG`` or the workspace's log.
    """
    name, version, tags = find_version(start, tracking_uri, model_name)
    registry = Registry(tracking_uri)
    aliases = [a for a, v in registry.aliases(name).items() if v == version]
    stmt = _provenance(name, version, tracking_uri) or {}
    build = stmt.get("predicate", {}).get("buildDefinition", {})
    deps = {d["name"].split(":")[0]: d for d in build.get("resolvedDependencies", [])}
    internal = build.get("internalParameters", {})
    run_id = tags.get("prefect_flow_run_id")
    events = [
        e
        for e in (audit or AuditLog.of(workspace_root, location=audit_location(None))).entries()
        if e.get("model") == name
        and (e.get("version") == version or e["details"].get("flow_run_id") == run_id)
    ]
    training_run = None
    run_ref = byproduct(stmt, "mlflow_run")
    mlflow_run = run_ref.get("uri", "").removeprefix("runs:/") if run_ref else None
    checkpoint = byproduct(stmt, "checkpoint")
    run = registry.run(mlflow_run) if mlflow_run else None
    if run is not None:
        training_run = {
            "mlflow_run_id": mlflow_run,
            **{k: run.tags.get(k) for k in ("device", "precision", "processes", "resumed_from_step")},
            **{k: run.params.get(k) for k in ("adapter", "warm_start")},
        }
        training_run["metrics"] = dict(run.metrics)
    data = deps.get("data", {})
    return {
        "model": {"name": name, "version": version, "uri": f"models:/{name}/{version}", "aliases": aliases},
        "data": {
            "name": data.get("name"),
            "dvc_md5": tags.get("data_md5"),
            "manifest_sha256": tags.get("data_manifest_sha256"),
            "dvc_remote": data.get("annotations", {}).get("dvc_remote_url"),
            "dvc_file": data.get("annotations", {}).get("dvc_file"),
        },
        "validation": [e["details"] for e in events if e["event"] == "data_validation"],
        "training": {
            **(training_run or {}),
            "training_key": internal.get("training_key"),
            "base_checkpoint_sha256": tags.get("base_checkpoint_sha256"),
            "checkpoint_sha256": checkpoint["digest"].get("sha256") if checkpoint else None,
        },
        "onnx": {
            "sha256": tags.get("onnx_sha256"),
            "opset": internal.get("onnx_opset"),
            "provider": tags.get("onnx_provider"),
        },
        "signature": {
            "key_id": tags.get("signing_key_id"),
            "bundle_sha256": tags.get("bundle_sha256"),
            "provenance_sha256": tags.get("provenance_sha256"),
            "builder": stmt.get("predicate", {}).get("runDetails", {}).get("builder", {}).get("id"),
        },
        "code": {
            "git_commit": tags.get("git_commit"),
            "dirty": tags.get("git_dirty"),
            "lock": deps.get("requirements.lock", {}).get("digest"),
            "environment": deps.get(ENVIRONMENT_DEPENDENCY, {}).get("digest"),
            "signed": deps.get("code", {}).get("annotations", {}).get("signed"),
        },
        "run": {
            "prefect_flow_run_id": run_id,
            "triggered_by": tags.get("triggered_by"),
            "config_sha256": tags.get("config_sha256"),
        },
        "gates": [e["details"] for e in events if e["event"] == "gate"],
        "approval": [
            {"event": e["event"], "actor": e["actor"], "time": e["time"], **e["details"]}
            for e in events
            if e["event"] in ("approval", "approval_counted", "rejection", "approval_refused")
        ],
        "promotions": [
            {
                "event": e["event"],
                "time": e["time"],
                "actor": e["actor"],
                "previous": e["details"].get("previous"),
            }
            for e in events
            if e["event"] in ("promotion", "rollback", "canary_rollback")
        ],
        "promoted_from": tags.get(PROMOTED_FROM),
        "statements": _statements(name, version, tracking_uri),
    }
