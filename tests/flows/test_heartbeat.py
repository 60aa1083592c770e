"""Flow-run heartbeats: sent by the flow body where attestflow starts the flow, by the engine everywhere else."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prefect import flow
from prefect.runtime import flow_run

from flows.heartbeat import flow_heartbeats, prompt_heartbeats


@flow
def beating() -> str:
    with flow_heartbeats():
        time.sleep(0.2)
    return str(flow_run.id)


def _recorders(monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import prefect.events
    import prefect.flow_engine

    ours: list[dict[str, Any]] = []
    engine: list[dict[str, Any]] = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kw: ours.append(kw))
    monkeypatch.setattr(prefect.flow_engine, "emit_event", lambda **kw: engine.append(kw))
    return ours, engine


def test_inside_prompt_heartbeats_the_flow_body_sends_the_engines_heartbeat_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ours, engine = _recorders(monkeypatch)
    with prompt_heartbeats():
        run_id = beating()
    beats = [e for e in engine if e["event"] == "prefect.flow-run.heartbeat"]
    assert beats == []  # the engine's are off...
    assert ours and ours[0]["event"] == "prefect.flow-run.heartbeat"  # ...and the body sends the same
    assert ours[0]["resource"]["prefect.resource.id"] == f"prefect.flow-run.{run_id}"
    assert any(r["prefect.resource.role"] == "flow" for r in ours[0]["related"])


def test_a_flow_started_elsewhere_keeps_the_engines_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    ours, engine = _recorders(monkeypatch)
    run_id = beating()
    assert ours == []
    beats = [e for e in engine if e["event"] == "prefect.flow-run.heartbeat"]
    assert beats and beats[0]["resource"]["prefect.resource.id"] == f"prefect.flow-run.{run_id}"
