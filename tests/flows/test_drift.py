"""The drift monitor compares with the champion's training data and emits an event only on drift."""

from __future__ import annotations

from typing import Any

import pytest

from flows import drift as drift_flow
from flows.release import release
from tasks.drift import DriftReport
from tasks.generate_data import generate
from tests.conftest import ExampleRepo


def test_only_a_shifted_snapshot_emits_the_drift_event(
    example_repo: ExampleRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = example_repo.write_config()
    release(config_path=str(config))
    emitted: list[dict[str, Any]] = []
    real = drift_flow.emit_event

    def spy(**kwargs: Any) -> Any:
        emitted.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(drift_flow, "emit_event", spy)
    same = example_repo.root / "same.csv"
    generate(1000, seed=30).to_csv(same, index=False)
    unchanged = drift_flow.monitor_drift(current=str(same), config_path=str(config))
    assert isinstance(unchanged, DriftReport) and not unchanged.drifted
    assert emitted == []

    shifted = example_repo.root / "shifted.csv"
    generate(1000, seed=31, drift=0.5).to_csv(shifted, index=False)
    report = drift_flow.monitor_drift(current=str(shifted), config_path=str(config))
    assert isinstance(report, DriftReport) and report.drifted
    assert [e["event"] for e in emitted] == [drift_flow.DRIFT_EVENT]
    assert emitted[0]["resource"]["attestflow.model"] == "tiny-credit"
    assert any("income" in r for r in emitted[0]["payload"]["reasons"])


def test_the_scheduled_monitor_skips_while_there_is_no_champion_to_compare_with(
    example_repo: ExampleRepo,
) -> None:
    state = drift_flow.monitor_drift(
        current=str(example_repo.data), config_path=str(example_repo.write_config()), return_state=True
    )
    assert state.is_completed() and state.name == "Skipped", state
    assert "no tiny-credit@champion yet" in str(state.message)
