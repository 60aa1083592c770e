"""Stage `register`: the signed bundle as a new version in the MLflow model registry.

The bundle folder is already a complete MLflow model (onnx flavor, signature, input example)
and every file of it is signed; this stage uploads exactly that folder as the artifacts of a
logged model of the training run and registers it, so the bytes downloaded and loaded are the
bytes signed. Tags tie the version to its inputs and evidence.

Registration is idempotent by release key (the digest of data, config, code, lock and base
checkpoint): the same inputs return the version already registered, and if they produced
different bytes this time, registration is refused rather than publishing a second artifact
under the same provenance.

A release killed at any point leaves at most one version for its inputs: the version is
created together with its tags in one registry write (never a version without the release key
that finds it again), and carries `INCOMPLETE` until its gate verdict is attached
(`tasks.attest`). The re-run finds that version by its release key and completes it instead of
registering another. A version of the same training run without a release key (left by a
release that registered and tagged in two steps) is tagged `INCOMPLETE` too, never reused.
"""

from __future__ import annotations

from prefect import task

from attestflow.errors import GateFailedError
from attestflow.records import OnnxValidationRecord, RegistrationRecord, SignatureRecord, TrainingRecord
from attestflow.registry import INCOMPLETE, Registry
from attestflow.tracking import fluent_uri, log_bundle


def register(
    signed: SignatureRecord,
    trained: TrainingRecord,
    validation: OnnxValidationRecord,
    *,
    model_name: str,
    tags: dict[str, str],
    tracking_uri: str,
) -> RegistrationRecord:
    """Register the signed bundle as a new model version (or return the one these inputs already made)."""
    import mlflow

    run_id = trained.mlflow_run_id
    registry = Registry(tracking_uri)
    _mark_untagged(registry, model_name, run_id)
    existing = registry.find_versions(model_name, release_key=tags["release_key"])
    if existing:
        version, old_tags = existing[0].version, existing[0].tags
        if old_tags.get("onnx_sha256") != tags["onnx_sha256"]:
            raise GateFailedError(
                [
                    f"refused: version {version} was registered from the same inputs (release key "
                    f"{tags['release_key'][:12]}) with different ONNX bytes; published artifacts are not overwritten"
                ]
            )
        return RegistrationRecord(
            model_name,
            version,
            f"models:/{model_name}/{version}",
            run_id,
            old_tags,
            True,
            INCOMPLETE in old_tags,
        )

    with fluent_uri(tracking_uri), mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"onnx_{k}": v for k, v in validation.metrics.items()})
        mlflow.log_metric("onnx_latency_ms_p50", validation.latency_ms_p50)
    model_id = log_bundle(tracking_uri, run_id, signed.bundle_dir)
    pending = f"no gate verdict attached yet (flow run {tags.get('prefect_flow_run_id', 'unknown')})"
    created = registry.create_version(model_name, model_id, run_id, {**tags, INCOMPLETE: pending})
    return RegistrationRecord(model_name, created.version, created.uri, run_id, dict(tags))


def _mark_untagged(registry: Registry, model_name: str, run_id: str) -> None:
    """Tag `INCOMPLETE` each version of this training run that has no release key (a crashed two-step registration)."""
    for left in registry.versions_of_run(model_name, run_id):
        if "release_key" not in left.tags and INCOMPLETE not in left.tags:
            registry.set_version_tag(
                model_name, left.version, INCOMPLETE, "registered without its release tags; never promote"
            )


register_task = task(name="register")(register)
