"""Training progress and curves, driven as a training loop would, read back from the Prefect API."""

from __future__ import annotations

import base64
import math
from typing import Any
from uuid import UUID

from prefect import flow, task
from prefect.settings import PREFECT_API_URL

from attestflow.progress import TrainingProgress
from tests.flows import api

STEPS_PER_EPOCH = 10
EPOCHS = 3


def history_of(epochs: int = EPOCHS) -> list[dict[str, float]]:
    """Points as a loop logs them: train_loss every step, validation at the end of each epoch."""
    points: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        for i in range(1, STEPS_PER_EPOCH + 1):
            step = (epoch - 1) * STEPS_PER_EPOCH + i
            point = {"step": float(step), "epoch": float(epoch), "train_loss": 0.7 * math.exp(-step / 12)}
            if i == STEPS_PER_EPOCH:
                point.update(val_loss=0.75 * math.exp(-step / 15), val_accuracy=0.6 + 0.01 * step)
            points.append(point)
    return points


@task
def train(model_name: str, min_interval_s: float, stop_at: int | None = None) -> dict[str, Any]:
    """A training loop's calls to TrainingProgress (the loop itself is a loop over the points)."""
    history = history_of()
    progress = TrainingProgress(model_name, total_steps=len(history), min_interval_s=min_interval_s)
    for point in history[:stop_at]:
        metrics = {k: v for k, v in point.items() if k not in ("step", "epoch")}
        progress.update(int(point["step"]), int(point["epoch"]), metrics)
    if stop_at is None:
        progress.finish(history)
    return {"api_calls": progress.api_calls, "failures": progress.failures}


@flow
def training_flow(
    model_name: str, min_interval_s: float = 60.0, stop_at: int | None = None
) -> dict[str, Any]:
    return train(model_name, min_interval_s, stop_at)


def _artifacts(flow_run_id: UUID | None) -> dict[str, dict[str, Any]]:
    """The artifacts of a flow run by key, as the API returns them."""
    body = {"artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}}}
    found = api.post(f"{PREFECT_API_URL.value()}/artifacts/filter", body)
    return {a["key"]: a for a in found if a["key"]}


def test_a_training_loop_leaves_progress_and_curves_on_its_run() -> None:
    state = training_flow("Tiny_Credit.v2", return_state=True)
    calls = state.result()
    # 30 updates within the 60 s interval: the first and the last step reach the API, then
    # finish() sets the progress to 100 % and publishes the curves.
    assert calls == {"api_calls": 4, "failures": 0}
    arts = _artifacts(state.state_details.flow_run_id)
    assert set(arts) == {"training-progress-tiny-credit-v2", "training-curves-tiny-credit-v2"}

    progress = arts["training-progress-tiny-credit-v2"]
    assert progress["type"] == "progress" and progress["data"] == 100.0 and progress["task_run_id"]
    assert "training ended at epoch 3, step 30" in progress["description"]

    curves = arts["training-curves-tiny-credit-v2"]
    assert curves["type"] == "markdown"
    assert "| 3 | 30 | 0.05746 | 0.1015 | 0.9 |" in curves["data"]  # the last epoch's row
    plot, _, summary = curves["description"].partition("\n\n")
    assert summary.startswith("Tiny_Credit.v2: training ended at epoch 3, step 30; train_loss 0.05746")
    prefix = "![training curves of Tiny_Credit.v2](data:image/svg+xml;base64,"
    assert plot.startswith(prefix) and plot.endswith(")")
    svg = base64.b64decode(plot[len(prefix) : -1]).decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "</svg>" in svg
    assert svg.count("<polyline") == 3 and "lowest val_loss" in svg  # train/val loss, val_accuracy


def test_progress_part_way_is_the_share_of_steps_done() -> None:
    state = training_flow("half", min_interval_s=0.0, stop_at=15, return_state=True)
    assert state.result() == {"api_calls": 15, "failures": 0}  # no throttling: one call per update
    progress = _artifacts(state.state_details.flow_run_id)["training-progress-half"]
    assert progress["data"] == 50.0
    assert progress["description"] == "half: epoch 2, step 15 of 30, train_loss 0.2006"


@task
def train_after_the_artifact_was_deleted() -> dict[str, Any]:
    """The API answers 404 to every progress update after the first; training goes on."""
    base = PREFECT_API_URL.value()
    progress = TrainingProgress("gone", total_steps=3, min_interval_s=0.0)
    progress.update(1, 1, {"train_loss": 1.0})
    body = {"artifacts": {"key": {"any_": ["training-progress-gone"]}}}
    (created,) = api.post(f"{base}/artifacts/filter", body)
    api.delete(f"{base}/artifacts/{created['id']}")
    for step in (2, 3):
        progress.update(step, 1, {"train_loss": 1.0 / step})
    progress.finish([{"step": 3.0, "epoch": 1.0, "train_loss": 0.33}])
    return {"api_calls": progress.api_calls, "failures": progress.failures}


@flow
def flow_losing_its_progress_artifact() -> dict[str, Any]:
    return train_after_the_artifact_was_deleted()


def test_a_failing_api_call_does_not_stop_training() -> None:
    state = flow_losing_its_progress_artifact(return_state=True)
    assert state.is_completed()
    # create, 2 refused updates, finish: a refused update and the curves, which still arrive
    assert state.result() == {"api_calls": 5, "failures": 3}
    assert set(_artifacts(state.state_details.flow_run_id)) == {"training-curves-gone"}
