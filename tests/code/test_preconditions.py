"""Prod preconditions read from the target's audit log and registry: a rollback drill, time in staging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from attestflow.audit import AuditLog
from attestflow.environments import Environment, Preconditions
from attestflow.preconditions import WAIVED_FIRST, check_preconditions, notifying_automation
from attestflow.verify import Check

MODEL = "credit-prod"


def _env(**pre: float) -> Environment:
    return Environment(name="prod", model_name=MODEL, preconditions=Preconditions(**pre))


def _registry(tmp_path: Path, champion: bool = True, previous: bool = True) -> str:
    """A SQLite registry holding `MODEL` versions 1 and 2, v2 @champion and v1 @previous as asked."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = MlflowClient(uri, uri)
    c.create_registered_model(MODEL)
    c.create_model_version(MODEL, source=tmp_path.as_uri())
    c.create_model_version(MODEL, source=tmp_path.as_uri())
    if champion:
        c.set_registered_model_alias(MODEL, "champion", "2")
    if previous:
        c.set_registered_model_alias(MODEL, "previous", "1")
    return uri


def _drill_check(
    tmp_path: Path, audit: AuditLog, now: datetime | None = None, champion: bool = True, previous: bool = True
) -> Check:
    checks = check_preconditions(
        _env(rollback_drill_days=7),
        tracking_uri=_registry(tmp_path, champion, previous),
        audit=audit,
        source_version_time=datetime.now(UTC),
        now=now,
    )
    return next(c for c in checks if c.name == "rollback_drill")


def test_a_recent_passed_drill_satisfies_the_precondition(tmp_path: Path) -> None:
    audit = AuditLog.of(tmp_path)
    audit.append("rollback_drill", model=MODEL, passed=True, seconds=1.5, versions=["1"], failures=[])
    check = _drill_check(tmp_path, audit)
    assert check.ok, check.detail
    assert "passed in 1.5 s" in check.detail


def test_a_drill_older_than_the_allowed_days_refuses(tmp_path: Path) -> None:
    audit = AuditLog.of(tmp_path)
    audit.append("rollback_drill", model=MODEL, passed=True, seconds=1.0, versions=["1"], failures=[])
    check = _drill_check(tmp_path, audit, now=datetime.now(UTC) + timedelta(days=8))
    assert not check.ok
    assert "older than 7 days" in check.detail


def test_a_failed_newest_drill_refuses_with_its_failures(tmp_path: Path) -> None:
    audit = AuditLog.of(tmp_path)
    audit.append("rollback_drill", model=MODEL, passed=True, seconds=1.0, versions=["1"], failures=[])
    audit.append(
        "rollback_drill", model=MODEL, passed=False, seconds=1.0, versions=["1"], failures=["v1: tampered"]
    )
    check = _drill_check(tmp_path, audit)
    assert not check.ok
    assert "failed: v1: tampered" in check.detail


def test_no_drill_recorded_refuses(tmp_path: Path) -> None:
    audit = AuditLog.of(tmp_path)
    audit.append("rollback_drill", model="another-model", passed=True, seconds=1.0, versions=[], failures=[])
    check = _drill_check(tmp_path, audit)
    assert not check.ok
    assert "no rollback drill" in check.detail


def test_a_target_without_a_champion_waives_the_drill(tmp_path: Path) -> None:
    check = _drill_check(tmp_path, AuditLog.of(tmp_path), champion=False, previous=False)
    assert check.ok
    assert check.detail == WAIVED_FIRST


def test_a_target_with_a_champion_but_no_previous_waives_the_drill(tmp_path: Path) -> None:
    # After the first promotion: nothing to roll back to, so no drill can pass yet (the second promotion).
    check = _drill_check(tmp_path, AuditLog.of(tmp_path), previous=False)
    assert check.ok
    assert check.detail == WAIVED_FIRST


@pytest.mark.parametrize(
    ("approved_ago", "ok"), [(timedelta(hours=1), False), (timedelta(hours=25), True), (None, False)]
)
def test_the_minimum_time_in_staging_counts_from_the_source_approval(
    tmp_path: Path, approved_ago: timedelta | None, ok: bool
) -> None:
    now = datetime.now(UTC)
    checks = check_preconditions(
        _env(min_staging_hours=24),
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        audit=AuditLog.of(tmp_path),
        source_version_time=None if approved_ago is None else now - approved_ago,
        now=now,
    )
    assert [c.name for c in checks] == ["min_staging_time"]
    assert checks[0].ok is ok, checks[0].detail


class _Action:
    def __init__(self, type_: str) -> None:
        self.type = type_


class _Trigger:
    def __init__(self, *expect: str) -> None:
        self.expect = set(expect)


class _Automation:
    def __init__(self, name: str, trigger: object, actions: list[str], enabled: bool = True) -> None:
        self.name, self.trigger, self.enabled = name, trigger, enabled
        self.actions = [_Action(a) for a in actions]


def test_an_automation_that_only_runs_a_deployment_is_no_notification() -> None:
    event = "attestflow.drift.detected"
    problem, _ = notifying_automation([_Automation("retrain", _Trigger(event), ["run-deployment"])], event)
    assert problem is not None and "sends a notification" in problem
    problem, found = notifying_automation(
        [_Automation("notify", _Trigger("attestflow.drift.*"), ["send-notification"])], event
    )
    assert problem is None and "'notify'" in found


def test_the_drill_verifies_promoted_versions_and_never_a_source_label(tmp_path: Path) -> None:
    from attestflow.rollback_drill import approved_versions

    audit = AuditLog.of(tmp_path)
    audit.append("approval", model=MODEL, version="staging:credit-default/1")
    audit.append("env_promotion_completed", model=MODEL, version="1")
    audit.append("approval", model=MODEL, version="2")
    audit.append("canary", model=MODEL, version="2", passed=False)
    assert approved_versions(audit, MODEL) == ["1"]
