"""A release that stops in a stage leaves one `release_failed` entry naming the stage, and `audit show` lists it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from attestflow.audit import AuditLog
from attestflow.errors import BadInputError
from attestflow.training.loop import Trainer
from flows.cli import app
from flows.release import release
from tests.conftest import ROOT, ExampleRepo


def _entries(repo: ExampleRepo, event: str) -> list[dict[str, Any]]:
    return [e for e in AuditLog.of(repo.workspace).entries() if e["event"] == event]


def test_bad_input_in_a_stage_is_audited_with_the_stage_and_shown_by_audit_show(
    example_repo: ExampleRepo,
) -> None:
    suite = yaml.safe_load((ROOT / "configs/expectations/credit.yaml").read_text())
    suite["expectations"].append({"type": "expect_no_such_thing", "kwargs": {"column": "age"}})
    path = example_repo.root / "bad-suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    config = example_repo.write_config("unknown-expectation.yaml", validate_data={"suite": str(path)})
    with pytest.raises(BadInputError, match="invalid expectation 'expect_no_such_thing'"):
        release(config_path=str(config))

    (started,) = _entries(example_repo, "run_started")
    (failed,) = _entries(example_repo, "release_failed")
    assert failed["model"] == "tiny-credit"
    assert failed["details"]["stage"] == "validate_data"
    assert failed["details"]["exit_code"] == 2
    assert failed["details"]["flow_run_id"] == started["details"]["flow_run_id"]
    assert "invalid expectation 'expect_no_such_thing'" in failed["details"]["reason"]
    assert "\n" not in failed["details"]["reason"]

    show = CliRunner().invoke(app, ["audit", "show", "--model", "tiny-credit", "--config", str(config)])
    assert show.exit_code == 0, show.output
    assert "release_failed" in show.output
    assert "stage=validate_data" in show.output and "expect_no_such_thing" in show.output


def test_a_programming_error_in_a_stage_runs_once_and_is_audited_as_a_crash(
    example_repo: ExampleRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def out_of_bounds(self: Trainer, train_split: Any, epoch: int, first_batch: int) -> float:
        calls.append(epoch)
        raise IndexError("Target 2 is out of bounds.")

    monkeypatch.setattr(Trainer, "run_epoch", out_of_bounds)
    config = example_repo.write_config(fine_tune={"retries": 2, "retry_delay_s": 0})
    with pytest.raises(IndexError, match="out of bounds"):
        release(config_path=str(config))
    assert calls == [1], "an IndexError is deterministic: never retried"
    (failed,) = _entries(example_repo, "release_failed")
    assert failed["details"]["stage"] == "fine_tune"
    assert failed["details"]["exit_code"] == 1
    assert failed["details"]["reason"] == "IndexError: Target 2 is out of bounds."
