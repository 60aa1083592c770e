"""Stage `register`: the signed bundle as a new version in the MLflow model registry.

The bundle folder is already a complete MLflow model (onnx flavor, signature, input example)
and every file of it is signed; this stage uploads exactly that folder as the artifacts of a
logged model of the training run and registers it, so the bytes downloaded and loaded are the
bytes signed. Tags tie the version to its inputs and evidence.

Registration is idempotent by release key (the digest of data, config, code, lock and base
checkpoint): the same inputs return the version already registered, and if they produced
different bytes this time, registration is refused rather than publishing a second artifact
under the same provenance.
"""

from __future__ import annotations

from prefect import task

from attestflow.errors import GateFailedError
from attestflow.records import OnnxValidationRecord, RegistrationRecord, SignatureRecord, TrainingRecord
from attestflow.registry import Registry
from attestflow.tracking import client, fluent_uri


def find_release(model_name: str, release_key: str, tracking_uri: str) -> tuple[str, dict[str, str]] | None:
    """(version, tags) of the version already registered for `release_key`, if any."""
    found = Registry(tracking_uri).find_versions(model_name, release_key=release_key)
    return (found[0].version, found[0].tags) if found else None


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
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    run_id = trained.mlflow_run_id
    existing = find_release(model_name, tags["release_key"], tracking_uri)
    if existing is not None:
        version, old_tags = existing
        if old_tags.get("onnx_sha256") != tags["onnx_sha256"]:
            raise GateFailedError(
                [
                    f"refused: version {version} was registered from the same inputs (release key "
                    f"{tags['release_key'][:12]}) with different ONNX bytes; published artifacts are not overwritten"
                ]
            )
        return RegistrationRecord(
            model_name, version, f"models:/{model_name}/{version}", run_id, old_tags, True
        )

    c = client(tracking_uri)
    with fluent_uri(tracking_uri), mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"onnx_{k}": v for k, v in validation.metrics.items()})
        mlflow.log_metric("onnx_latency_ms_p50", validation.latency_ms_p50)
        logged = mlflow.initialize_logged_model(name="model", source_run_id=run_id)
        c.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        c.log_model_artifacts(logged.model_id, str(signed.bundle_dir))
        mlflow.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        registered = mlflow.register_model(f"models:/{logged.model_id}", model_name)
    version = str(registered.version)
    for key, value in tags.items():
        c.set_model_version_tag(model_name, version, key, value)
    return RegistrationRecord(model_name, version, f"models:/{model_name}/{version}", run_id, dict(tags))


register_task = task(name="register")(register)
