"""Stage `gates`: every gate of the policy, run on the exported ONNX model in ONNX Runtime.

One module per gate (`performance`, `regression`, `fairness`, `robustness`, `resources`,
`data`, `format`, `licenses`, `attribution`), each a pure function ``gate(evaluation, policy) -> list[GateDecision]``.
`run_gates` does the I/O once (reads the data, runs the candidate and the champion in ONNX
Runtime) and asks each gate the policy lists. It returns every decision, passed or not, in the
order of the policy: acting on them (refusing to promote) is the flow's job.

Given a Prefect task runner (in a release: `gates.task_runner`, threads by default, or Dask or
Ray on a cluster), each gate is a Prefect task run of its own on that runner, so the gates run
side by side and show one by one on the run page; without one (`attestflow evaluate`, plain
calls) they run one after another in the calling thread. Either way the decisions are the same.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from attestflow.adapters import Inputs, load_adapter
from attestflow.config import DataConfig, ExplainConfig, ModelConfig
from attestflow.dataset import read_table, split_table
from attestflow.digests import file_digest
from attestflow.evidence_check import EnvTrust
from attestflow.explain import explain_model
from attestflow.policy import GatePolicy
from attestflow.records import DataValidationRecord, GateDecision, GateReport, write_json
from tasks.gates import attribution, data, fairness, licenses, performance, regression, resources, robustness
from tasks.gates import format as format_gate
from tasks.gates.evaluation import Evaluation, Predict, evaluation, onnx_predictor
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
    "licenses": licenses.gate,
    "attribution": attribution.gate,
}


def evaluate_gate(name: str, ev: Evaluation, policy: GatePolicy) -> list[GateDecision]:
    """The decisions of the gate `name` on `ev`."""
    return GATES[name](ev, policy)


gate_task = task(name="gate", task_run_name="gate-{name}", cache_policy=NO_CACHE)(evaluate_gate)


class PortablePredict:
    """The candidate's ONNX Runtime predictor in a form that can be sent to another process.

    An ONNX Runtime session cannot be pickled, so this pickles as the model's path and provider
    choice and opens its own session where it is first called. The path must be readable there
    too: on a cluster, the workspace sits on storage the workers share.
    """

    def __init__(self, onnx_path: Path, provider: str) -> None:
        self.onnx_path = onnx_path
        self.provider = provider
        self._predict: Predict | None = None

    def __call__(self, inputs: Inputs) -> np.ndarray:
        if self._predict is None:
            self._predict, _ = onnx_predictor(self.onnx_path, self.provider)
        return self._predict(inputs)

    def __getstate__(self) -> dict[str, Any]:
        return {"onnx_path": self.onnx_path, "provider": self.provider, "_predict": None}


ALONE = {"resources"}
"""Gates that measure the process itself, so they never share it with other gates."""


def decide(
    ev: Evaluation, policy: GatePolicy, task_runner: TaskRunner[Any] | None = None
) -> list[GateDecision]:
    """Every decision of the gates the policy lists, in the policy's order.

    With a `task_runner`, each gate is submitted as a task run to a fresh copy of it and the
    results are collected in submission order; a gate that raises raises here, as it would
    when the gates run one after another.
    """
    if task_runner is None:
        return [d for name in policy.run for d in evaluate_gate(name, ev, policy)]
    if ev.predict is not None and not isinstance(task_runner, ThreadPoolTaskRunner):
        ev = replace(ev, predict=PortablePredict(ev.onnx_path, ev.provider))
    # The resources gate measures latency and the process's memory growth: it runs alone, after
    # the others, or their threads' allocations and CPU time would be counted as the model's.
    shared = [name for name in policy.run if name not in ALONE]
    with task_runner.duplicate() as runner:
        futures = {
            name: runner.submit(gate_task, {"name": name, "ev": ev, "policy": policy}) for name in shared
        }
        decided = {name: future.result() for name, future in futures.items()}
        for name in policy.run:
            if name in ALONE:
                decided[name] = runner.submit(gate_task, {"name": name, "ev": ev, "policy": policy}).result()
    return [d for name in policy.run for d in decided[name]]


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
    task_runner: TaskRunner[Any] | None = None,
    trust: EnvTrust | None = None,
    bom: Path | None = None,
    attributions: Path | None = None,
) -> GateReport:
    """Evaluate the candidate once and return the decision of every gate the policy lists.

    `task_runner` runs the gates as Prefect task runs side by side (see `decide`); it needs a
    Prefect flow or task run around it. `trust`: the champion is verified as a version promoted
    from another environment. `bom`: the judged bundle's AI bill of materials (the licence gate).
    `attributions`: the candidate's (`attestflow.explain`); without them, the attribution gate
    has them computed from `checkpoint` when one is given.
    """
    started = time.perf_counter()
    adapter = load_adapter(model or ModelConfig())
    table = read_table(data_cfg.path)
    _, held_out = split_table(table, data_cfg, adapter)
    base = None
    if {"regression", "attribution"} & set(policy.run):
        base = champion(
            model_name, policy.baseline.alias, tracking_uri, held_out.inputs, provider, public_key, trust
        )
    with tempfile.TemporaryDirectory(prefix="attestflow-gates-") as tmp:
        if attributions is None and checkpoint is not None and "attribution" in policy.run:
            found = explain_model(adapter, checkpoint, held_out, data_cfg, ExplainConfig())
            attributions = write_json(Path(tmp) / "attributions.json", found)
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
            attributions=attributions,
            bom=bom,
        )
        decisions = decide(ev, policy, task_runner)
    return GateReport(
        model=model_label or str(onnx_path),
        model_digest=file_digest(onnx_path),
        policy_digest=policy.digest(),
        provider=ev.ran_on,
        baseline=base.uri if base is not None else None,
        passed=bool(decisions) and all(d.passed for d in decisions),
        decisions=decisions,
        seconds=time.perf_counter() - started,
        human_approval=regression.requires_approval(policy, base if "regression" in policy.run else None),
    )


run_gates_task = task(name="gates")(run_gates)
