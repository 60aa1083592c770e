"""Stage `register`: the signed bundle as a new version in the MLflow model registry.

The version is logged with the onnx flavor, a signature and an input example, into the same
MLflow run as training; the bundle's ``attestation/`` folder (signature, provenance, config,
data manifest, metrics) is attached to the logged model, so that downloading the version
yields everything `attestflow verify` needs. Tags tie the version to its inputs and evidence.

Registration is idempotent by release key (the digest of data, config, code, lock and base
checkpoint): the same inputs return the version already registered, and if they produced
different bytes this time, registration is refused rather than publishing a second artifact
under the same provenance.
"""

from __future__ import annotations

import numpy as np
import onnx
from prefect import task

from attestflow.adapters import load_adapter
from attestflow.bundle import ATTESTATION, MODEL
from attestflow.config import DataConfig, ModelConfig
from attestflow.dataset import load_splits
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
    data: DataConfig,
    tags: dict[str, str],
    tracking_uri: str,
    model: ModelConfig | None = None,
) -> RegistrationRecord:
    """Register the signed bundle as a new model version (or return the one these inputs already made)."""
    import mlflow
    import mlflow.onnx
    from mlflow.models import infer_signature

    from attestflow.onnx_runtime import session

    bundle_dir, run_id = signed.bundle_dir, trained.mlflow_run_id
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

    onnx_path = bundle_dir / MODEL
    _, test = load_splits(data, load_adapter(model or ModelConfig()))
    example = test.head(5).inputs
    sess = session(onnx_path, "cpu")
    outputs = sess.run(None, example)[0]
    signature = infer_signature(example, np.asarray(outputs))
    with fluent_uri(tracking_uri), mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"onnx_{k}": v for k, v in validation.metrics.items()})
        mlflow.log_metric("onnx_latency_ms_p50", validation.latency_ms_p50)
        info = mlflow.onnx.log_model(
            onnx.load(str(onnx_path)),
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=model_name,
            onnx_execution_providers=["CPUExecutionProvider"],
            save_as_external_data=False,
        )
    c = client(tracking_uri)
    c.log_model_artifacts(info.model_id, str(bundle_dir / ATTESTATION), ATTESTATION)
    version = str(info.registered_model_version)
    for key, value in tags.items():
        c.set_model_version_tag(model_name, version, key, value)
    return RegistrationRecord(model_name, version, f"models:/{model_name}/{version}", run_id, dict(tags))


register_task = task(name="register")(register)
