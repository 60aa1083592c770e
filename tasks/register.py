"""Stage `register`: the ONNX model as a new version in the MLflow model registry.

The version is logged with the onnx flavor, a signature and an input example, into the
same MLflow run as training, and tagged with the digests that tie it to its inputs: data
md5, ONNX SHA-256, config SHA-256, git commit and Prefect flow run id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from prefect import task

from attestflow.config import DataConfig
from attestflow.dataset import load_splits
from attestflow.records import OnnxValidationRecord, RegistrationRecord
from attestflow.tracking import client, fluent_uri


def register(
    model_name: str,
    onnx_path: Path,
    data: DataConfig,
    run_id: str,
    tracking_uri: str,
    validation: OnnxValidationRecord,
    tags: dict[str, str],
) -> RegistrationRecord:
    """Log the ONNX model to run `run_id`, register it as a new version, and tag the version."""
    import mlflow
    import mlflow.onnx
    from mlflow.models import infer_signature

    from tasks.validate_onnx import session

    _, test = load_splits(data)
    example = test.x[:5]
    sess = session(onnx_path, "cpu")
    outputs = sess.run(None, {sess.get_inputs()[0].name: example})[0]
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
    version = str(info.registered_model_version)
    c = client(tracking_uri)
    for key, value in tags.items():
        c.set_model_version_tag(model_name, version, key, value)
    return RegistrationRecord(
        model_name=model_name,
        version=version,
        model_uri=f"models:/{model_name}/{version}",
        run_id=run_id,
        tags=dict(tags),
    )


register_task = task(name="register")(register)
