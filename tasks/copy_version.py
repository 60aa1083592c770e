"""Stage `copy_version`: the verified source version as a new version of the target environment's model.

When both environments share one tracking server, MLflow's own ``copy_model_version`` makes
the copy (its tags, run and artifacts are the source's). Otherwise the verified folder, as
downloaded from the source, is uploaded to the target registry as a logged model of a run in
the target's experiment and registered there, with the source's tags. Either way the copy is
tagged `attestflow.registry.PROMOTED_FROM`, by which a re-run of the promotion finds it
instead of copying again, and `INCOMPLETE` until the target's gate verdict is attached to it.
Each promotion also opens an MLflow run in the target's experiment that its gate results are
logged to, so they never land in the source's training run.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from prefect import task

from attestflow.bundle import ENVIRONMENTS, MLFLOW_META
from attestflow.env_promotion import CopyRecord, Source, find_copy
from attestflow.records import RegistrationRecord
from attestflow.registry import INCOMPLETE, PROMOTED_FROM, ModelRef, ModelVersion, Registry
from attestflow.tracking import client, ensure_experiment, log_bundle
from attestflow.workspace import Workspace


def copy_version(
    source: Source,
    folder: Path,
    *,
    model_name: str,
    tracking_uri: str,
    experiment: str,
    ws: Workspace,
    flow_run_id: str,
) -> CopyRecord:
    """Copy `source` (verified, downloaded to `folder`) into `model_name` at `tracking_uri`, once."""
    registry = Registry(tracking_uri)
    run_id = (
        client(tracking_uri)
        .create_run(
            ensure_experiment(tracking_uri, experiment, ws),
            tags={PROMOTED_FROM: source.label, "prefect_flow_run_id": flow_run_id},
            run_name=f"promote {source.label}",
        )
        .info.run_id
    )
    pending = (
        f"promoted from {source.label}; no gate verdict of this environment yet (flow run {flow_run_id})"
    )
    same = tracking_uri == source.tracking_uri
    method = "copy_model_version" if same else "download and register"
    found = find_copy(registry, model_name, source)
    if found is not None:
        return CopyRecord(source, _record(found, run_id), method, reused=True)
    if same:
        made = registry.copy_version(ModelRef(source.model, source.version, None), model_name)
        registry.set_version_tag(model_name, made.version, PROMOTED_FROM, source.label)
        registry.set_version_tag(model_name, made.version, INCOMPLETE, pending)
    else:
        tags = Registry(source.tracking_uri).version(ModelRef(source.model, source.version, None))
        with tempfile.TemporaryDirectory(prefix="attestflow-copy-") as tmp:
            upload = Path(tmp) / "bundle"
            shutil.copytree(folder, upload, ignore=shutil.ignore_patterns(ENVIRONMENTS, MLFLOW_META))
            model_id = log_bundle(tracking_uri, run_id, upload)
        made = registry.create_version(
            model_name,
            model_id,
            run_id,
            {**(tags.tags if tags else {}), PROMOTED_FROM: source.label, INCOMPLETE: pending},
        )
    return CopyRecord(source, _record(made, run_id), method)


def _record(version: ModelVersion, run_id: str) -> RegistrationRecord:
    """The copy as a registration whose run (where this promotion's gate results go) is `run_id`."""
    return RegistrationRecord(version.name, version.version, version.uri, run_id, dict(version.tags))


copy_version_task = task(name="copy_version")(copy_version)
