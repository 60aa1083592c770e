"""Prod's monitoring precondition, read through the Prefect API of a real server, and its set-up."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from attestflow.audit import AuditLog
from attestflow.environments import Environment, MonitoringRequirement, Preconditions, load_environments
from attestflow.errors import UnavailableError
from attestflow.preconditions import check_preconditions
from attestflow.verify import Check
from deployments.monitoring import AUTOMATIONS, ensure_monitoring
from tests.conftest import ROOT


def _prod_monitoring() -> MonitoringRequirement:
    """Prod's monitoring precondition in configs/environments.yaml (its own monitor, in prefect.yaml)."""
    required = load_environments(ROOT / "configs/environments.yaml").environments["prod"].preconditions
    assert required.monitoring is not None and required.monitoring.automations
    return required.monitoring


REQUIREMENT = _prod_monitoring()
MONITOR = REQUIREMENT.deployment  # drift-monitor/prod


@pytest.fixture
def on_server(prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This process and its children talk to the real server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        yield prefect_server


def _monitoring(tmp_path: Path) -> Check:
    env = Environment(
        name="prod", model_name="credit-prod", preconditions=Preconditions(monitoring=REQUIREMENT)
    )
    checks = check_preconditions(
        env,
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        audit=AuditLog.of(tmp_path),
        source_version_time=datetime.now(UTC),
    )
    return next(c for c in checks if c.name == "monitoring")


def test_monitoring_is_refused_until_set_up_and_each_missing_part_refuses_again(
    on_server: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    check = _monitoring(tmp_path)
    assert not check.ok and f"deployment {MONITOR} does not exist" in check.detail

    done = ensure_monitoring(REQUIREMENT, "http://127.0.0.1:9/notify")
    assert f"deployed {MONITOR} from prefect.yaml" in done
    check = _monitoring(tmp_path)
    assert check.ok, check.detail
    assert "'notify on drift' notifies on attestflow.drift.detected" in check.detail
    assert "notifies on attestflow.audit.canary_rollback" in check.detail

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(MONITOR)
        client.pause_deployment(deployment.id)
        check = _monitoring(tmp_path)
        assert not check.ok and f"deployment {MONITOR} is paused" in check.detail
        client.resume_deployment(deployment.id)

        (drift,) = client.read_automations_by_name("notify on drift")
        client.pause_automation(drift.id)
        check = _monitoring(tmp_path)
        assert not check.ok
        assert "notifying on attestflow.drift.detected are disabled: 'notify on drift'" in check.detail

        (canary,) = client.read_automations_by_name("notify on canary roll-back")
        client.delete_automation(canary.id)
        check = _monitoring(tmp_path)
        assert not check.ok and "no automation expects attestflow.audit.canary_rollback" in check.detail

    # Idempotent: run again, it re-enables and re-creates what is missing, and creates no duplicates.
    done = ensure_monitoring(REQUIREMENT)
    assert (
        "updated automation 'notify on drift'" in done
        and "created automation 'notify on canary roll-back'" in done
    )
    assert _monitoring(tmp_path).ok
    with get_client(sync_client=True) as client:
        for name in AUTOMATIONS:
            assert len(client.read_automations_by_name(name)) == 1


def test_no_prefect_api_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}), pytest.raises(UnavailableError):
        _monitoring(tmp_path)
