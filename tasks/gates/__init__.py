"""Stage `gates`: every gate of the policy, run on the exported ONNX model in ONNX Runtime.

One module per gate (`performance`, `regression`, `fairness`, `robustness`, `resources`,
`data`, `format`), each a pure function ``gate(evaluation, policy) -> list[GateDecision]``.
`run_gates` does the I/O once (reads the data, runs the candidate and the champion in ONNX
Runtime) and asks each gate the policy lists, in order. It returns every decision, passed or
not: acting on them (refusing to promote) is the flow's job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from prefect import task

from attestflow.adapters import load_adapter
from attestflow.config import DataConfig, ModelConfig
from attestflow.dataset import read_table, split_table
from attestflow.digests import file_digest
from attestflow.policy import GatePolicy
from attestflow.records import DataValidationRecord, GateDecision, GateReport
from tasks.gates import data, fairness, performance, regression, resources, robustness
from tasks.gates import format as format_gate
from tasks.gates.evaluation import Evaluation, evaluation
from tasks.gates.registry import champion

Gate = Callable[[Evaluation, GatePolicy], list[GateDecision]]

GATES: dict[str, Gate] = {
    "performance": performance.gate,
    "regression": regression.gate,
    "fairness": fairness.gate,
    "robustness": robustness.gate,
    "resources": resources.gate,
    "data": data.gate,
    "format": format_gate.gate,
}


def run_gates(
    policy: GatePolicy,
    onnx_path: Path,
    data_cfg: DataConfig,
    *,
    model_name: str,
    tracking_uri: str,
    provider: str = "cpu",
    checkpoint: Path | None = None,
    data_validation: DataValidationRecord | None = None,
    model_label: str | None = None,
    public_key: Path | None = None,
    model: ModelConfig | None = None,
) -> GateReport:
    """Evaluate the candidate once and return the decision of every gate the policy lists."""
    started = time.perf_counter()
    adapter = load_adapter(model or ModelConfig())
    table = read_table(data_cfg.path)
    _, held_out = split_table(table, data_cfg, adapter)
    base = None
    if "regression" in policy.run:
        base = champion(
            model_name, policy.baseline.alias, tracking_uri, held_out.inputs, provider, public_key
        )
    ev = evaluation(
        onnx_path,
        data_cfg,
        table,
        held_out,
        adapter,
        provider=provider,
        format_policy=policy.format,
        baseline=base,
        checkpoint=checkpoint,
        data_validation=data_validation,
    )
    decisions = [d for name in policy.run for d in GATES[name](ev, policy)]
    return GateReport(
        model=model_label or str(onnx_path),
        model_digest=file_digest(onnx_path),
        policy_digest=policy.digest(),
        provider=ev.ran_on,
        baseline=base.uri if base is not None else None,
        passed=bool(decisions) and all(d.passed for d in decisions),
        decisions=decisions,
        seconds=time.perf_counter() - started,
    )


run_gates_task = task(name="gates")(run_gates)
