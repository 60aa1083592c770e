"""The gates of a release as Prefect task runs on the configured task runner: same decisions, same order."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.settings import PREFECT_API_URL
from prefect.task_runners import TaskRunner

from attestflow.config import GatesConfig
from attestflow.records import GateDecision, GateReport
from tasks.gates import run_gates
from tests.code.planted import PASSED_SUITE, Lab, bundled_policy, make_lab
from tests.flows import api


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(tmp_path_factory.mktemp("lab"))


def _gates(lab: Lab, tracking_uri: str, task_runner: TaskRunner[Any] | None) -> GateReport:
    return run_gates(
        bundled_policy(),
        lab.good_onnx,
        lab.data,
        model_name="credit",
        tracking_uri=tracking_uri,
        checkpoint=lab.good_checkpoint,
        data_validation=PASSED_SUITE,
        task_runner=task_runner,
    )


@flow
def gates_flow(lab: Lab, tracking_uri: str, gates: GatesConfig) -> GateReport:
    return _gates(lab, tracking_uri, gates.make_task_runner())


def _comparable(d: GateDecision) -> tuple[Any, ...]:
    """A decision without what is measured anew on every run (the resources gate's latency and memory)."""
    measured = d.gate == "resources"
    value = None if measured or math.isnan(d.value) else d.value
    return (d.gate, d.metric, d.threshold, d.passed, d.policy_digest, value, None if measured else d.reason)


def _task_run_names(flow_run_id: UUID | None, expected: int, timeout: float = 30) -> list[str]:
    """The names of the flow run's task runs, once `expected` of them are recorded (the server
    writes task runs from events, a moment after they ran)."""
    body = {"flow_runs": {"id": {"any_": [str(flow_run_id)]}}}
    deadline = time.monotonic() + timeout
    while True:
        runs = api.post(f"{PREFECT_API_URL.value()}/task_runs/filter", body)
        if len(runs) >= expected or time.monotonic() > deadline:
            return sorted(r["name"] for r in runs)
        time.sleep(0.5)


@pytest.mark.parametrize(
    "gates",
    [
        GatesConfig(task_runner="threads", max_workers=3),
        GatesConfig(
            task_runner="prefect.task_runners:ProcessPoolTaskRunner", task_runner_options={"max_workers": 2}
        ),
    ],
    ids=["threads", "process-pool-by-import-path"],
)
def test_gates_on_a_task_runner_decide_as_they_do_one_after_another(
    lab: Lab, tmp_path: Path, gates: GatesConfig
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    sequential = _gates(lab, uri, None)
    state = gates_flow(lab, uri, gates, return_state=True)
    concurrent = state.result()
    assert [_comparable(d) for d in concurrent.decisions] == [_comparable(d) for d in sequential.decisions]
    assert concurrent.passed == sequential.passed and concurrent.passed, concurrent.failures()
    # Each gate the policy lists ran as a Prefect task run of its own.
    expected = sorted(f"gate-{g}" for g in bundled_policy().run)
    assert _task_run_names(state.state_details.flow_run_id, len(expected)) == expected
