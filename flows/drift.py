"""The drift monitoring flow: a new snapshot against the champion's training data.

It writes a report artifact on the flow run and, when the snapshot has drifted, emits the
Prefect event ``attestflow.drift.detected`` for the model; the trigger of the deployment
``retrain/on-drift`` (``prefect.yaml``) turns that event into a retraining run. The monitor
runs on a schedule from the first deployment on, so before there is a champion it ends as
``Skipped``: there is nothing to compare with yet.

The reference is named by the champion's signed provenance, so the champion is verified first,
in an environment with that environment's trust (``drift-monitor/prod`` watches prod's model:
a version promoted from staging verifies with staging's keys and prod's own statements); a
champion that does not verify fails the run rather than being compared with data it may not
have seen. A run in an environment is named and tagged after it, like a release.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.states import Completed, State

from attestflow.artifacts import artifact_key
from attestflow.dvc_remote import fetch_object
from attestflow.environments import release_config, trust_in
from attestflow.errors import BadInputError, GateFailedError
from attestflow.evidence_check import EnvTrust
from attestflow.keys import trusted_public_key
from attestflow.lineage_graph import lineage
from attestflow.preconditions import DRIFT_EVENT
from attestflow.records import to_jsonable
from attestflow.registry import ModelRef, Registry
from attestflow.tracking import tracking_uri
from attestflow.verify import verify_model_uri
from attestflow.workspace import Workspace
from flows.stages import environment_tags, run_name
from tasks.drift import DriftReport, drift_task


def verified_champion(model_uri: str, uri: str, public_key: Path, trust: EnvTrust | None) -> None:
    """Raise `GateFailedError` unless the version `model_uri` verifies (with `trust` for a promoted one)."""
    checked = verify_model_uri(model_uri, uri, public_key, trust=trust)
    if not checked.ok:
        raise GateFailedError([f"{model_uri} does not verify: {f}" for f in checked.failures])


def champion_training_data(model_uri: str, uri: str, ws: Workspace) -> Path:
    """The training snapshot of `model_uri`, fetched through DVC from the remote its provenance names."""
    graph = lineage(model_uri, uri, ws.root)
    md5, remote = graph["data"]["dvc_md5"], graph["data"]["dvc_remote"]
    if not md5 or not remote or md5.endswith(".dir"):
        raise BadInputError(
            f"the champion's provenance names no single-file DVC snapshot in a remote ({md5})"
        )
    suffix = Path(str(graph["data"]["name"]).removeprefix("data:")).suffix or ".csv"
    copy = Path(tempfile.mkdtemp(prefix="attestflow-drift-")) / f"reference{suffix}"
    return fetch_object(remote, md5, copy)


def _markdown(report: DriftReport, model_name: str) -> str:
    rows = "\n".join(
        f"| {f.feature} | {f.psi:.3f} | {f.ks:.3f} | {'**drifted**' if f.drifted else 'ok'} |"
        for f in report.features
    )
    verdict = "**drift detected**: " + "; ".join(report.reasons) if report.drifted else "no drift"
    return (
        f"# Drift of {model_name}'s data\n\n{verdict}\n\n"
        f"Reference: champion's training snapshot ({report.rows_reference} rows); current: `{report.current}` "
        f"({report.rows_current} rows); label shift (TV distance) {report.label_shift:.3f}.\n\n"
        f"| feature | PSI | KS | |\n|---|---|---|---|\n{rows}\n"
    )


@flow(name="drift-monitor", log_prints=True, flow_run_name=run_name)
def monitor_drift(
    current: str,
    config_path: str = "configs/release.yaml",
    environment: str | None = None,
    environments_path: str = "configs/environments.yaml",
) -> DriftReport | State[Any]:
    """Compare the snapshot at `current` with the champion's training data; emit an event on drift.

    With `environment`, the champion is that environment's (of `environments_path`), verified with its trust.
    """
    with environment_tags(environment):
        return _monitor(current, config_path, environment, environments_path)


def _monitor(
    current: str, config_path: str, environment: str | None, environments_path: str
) -> DriftReport | State[Any]:
    log = get_run_logger()
    cfg = release_config(config_path, None, environment, environments_path)
    ws = Workspace.at(cfg.workspace)
    uri = tracking_uri(cfg.register.tracking_uri, ws)
    champion = Registry(uri).version(ModelRef(cfg.model_name, None, cfg.promote.alias))
    if champion is None:
        message = f"no {cfg.model_name}@{cfg.promote.alias} yet: nothing to compare with"
        log.info("skipping: %s", message)
        return Completed(name="Skipped", message=message)
    model_uri = f"models:/{champion.name}/{champion.version}"
    key = trusted_public_key(cfg.sign.public_key, ws.root)
    verified_champion(model_uri, uri, key, trust_in(environment, environments_path))
    reference = champion_training_data(model_uri, uri, ws)
    report = drift_task(cfg.drift, cfg.data, reference, Path(current))
    create_markdown_artifact(
        key=artifact_key(cfg.model_name, "drift"),
        markdown=_markdown(report, cfg.model_name),
        description="data drift report",
    )
    if report.drifted:
        emit_event(
            event=DRIFT_EVENT,
            resource={
                "prefect.resource.id": f"attestflow.model.{cfg.model_name}",
                "attestflow.model": cfg.model_name,
            },
            payload={"current": current, "reasons": report.reasons, "report": to_jsonable(report)},
        )
        log.warning("drift detected: %s", "; ".join(report.reasons))
    return report
