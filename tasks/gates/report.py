"""Where gate decisions are shown: MLflow, the Prefect run page, and the terminal.

The decisions of a release are logged to its MLflow training run (``gates.json`` as an
artifact, and per decision the metrics ``gate_margin/``, ``gate_passed/`` and
``gate_threshold/<gate>/<metric>``, which calibration reads back) and tagged on the model
version; on the Prefect run page (when there is one) they are a table artifact keyed by the
model name. ``gates.json`` is also kept in the release folder.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

from prefect import task

from attestflow.artifacts import artifact_key
from attestflow.progress import in_prefect_run
from attestflow.records import GateDecision, GateReport, RegistrationRecord, write_json
from attestflow.redact import redact, redact_json
from attestflow.tracking import client

MARGIN_PREFIX = "gate_margin/"
PASSED_PREFIX = "gate_passed/"
THRESHOLD_PREFIX = "gate_threshold/"


def metric_name(d: GateDecision, prefix: str = MARGIN_PREFIX) -> str:
    """The MLflow metric name under `prefix` for a decision (its margin, by default)."""
    gate, metric = (re.sub(r"[^A-Za-z0-9_.-]+", "_", part) for part in (d.gate, d.metric))
    return f"{prefix}{gate}/{metric}"


def decision_metrics(report: GateReport) -> dict[str, float]:
    """Margin, pass (1 or 0) and threshold of every decision, by MLflow metric name."""
    out: dict[str, float] = {}
    for d in report.decisions:
        out[metric_name(d, MARGIN_PREFIX)] = d.margin
        out[metric_name(d, PASSED_PREFIX)] = float(d.passed)
        out[metric_name(d, THRESHOLD_PREFIX)] = d.threshold
    return out


def number(value: float | None) -> str:
    """A value for a table cell: four significant digits, or a dash when there is none."""
    return "-" if value is None or math.isnan(value) else f"{value:.4g}"


def interval(ci: tuple[float, float] | None) -> str:
    """A confidence interval for a table cell."""
    return "-" if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def table_rows(report: GateReport) -> list[dict[str, str]]:
    """One row per decision, every cell a string, in the order the gates ran."""
    return [
        {
            "gate": d.gate,
            "metric": d.metric,
            "value": number(d.value),
            "threshold": number(d.threshold),
            "baseline": number(d.baseline_value),
            "ci": interval(d.ci),
            "margin": number(d.margin),
            "result": "pass" if d.passed else "FAIL",
            "reason": d.reason,
        }
        for d in report.decisions
    ]


def publish_gates(
    report: GateReport, registration: RegistrationRecord, *, out_dir: Path, tracking_uri: str
) -> Path:
    """Write ``out_dir/gates.json``, log the decisions to MLflow and to the Prefect run page; returns the JSON."""
    from mlflow.entities import Metric
    from prefect.artifacts import create_table_artifact

    gates_json = write_json(out_dir / "gates.json", report)
    c = client(tracking_uri)
    c.log_artifact(registration.run_id, str(gates_json))
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in decision_metrics(report).items()]
    c.log_batch(registration.run_id, metrics=metrics)
    c.set_model_version_tag(
        registration.model_name, registration.version, "gates_passed", str(report.passed).lower()
    )
    if in_prefect_run():
        verdict = "passed" if report.passed else "failed"
        create_table_artifact(
            table=redact_json(table_rows(report)),
            key=artifact_key(registration.model_name),
            description=redact(
                f"Gates of {registration.model_uri}: {verdict} (policy {report.policy_digest}, "
                f"model sha256:{report.model_digest.value}, baseline {report.baseline or 'none'})"
            ),
        )
    return gates_json


publish_gates_task = task(name="publish_gates")(publish_gates)
