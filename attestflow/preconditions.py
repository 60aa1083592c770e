"""What must hold in an environment before a version may be promoted into it, checked at the door.

The seed documents ask what production needs after deployment: someone watching (the drift
monitor scheduled, and a person notified on drift and on a canary roll-back), a way back
that was tried recently (a rollback drill that passed), and a version that spent its time
in staging. Each is checked from its source of truth (the Prefect API, the target's audit
log, the source version's signed approval time), never from configuration alone, and comes
back as one `Check` line with its reason, so a refusal says what to fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from attestflow.audit import AuditLog
from attestflow.config import PromoteConfig
from attestflow.environments import Environment, MonitoringRequirement
from attestflow.errors import UnavailableError
from attestflow.registry import Registry
from attestflow.verify import Check

DRIFT_EVENT = "attestflow.drift.detected"
"""Emitted by the drift monitor (flows/drift.py) when a snapshot drifted from the champion's data."""
CANARY_ROLLBACK_EVENT = "attestflow.audit.canary_rollback"
"""The audit entry a canary that says no writes when the promotion's rollback hook moves the alias back
(`attestflow.aliases.restore_previous`), mirrored as a Prefect event by `attestflow.audit.mirror_to_prefect`."""
NOTIFYING_ACTIONS = frozenset({"send-notification", "call-webhook"})
DRILL_EVENT = "rollback_drill"
PREVIOUS_ALIAS = PromoteConfig().previous_alias
"""The alias a rollback goes to: an environment keeps the release config's default."""
WAIVED_FIRST = "waived: nothing to roll back to yet (no @champion, or no @previous)"


def check_preconditions(
    env: Environment,
    *,
    tracking_uri: str,
    audit: AuditLog,
    source_version_time: datetime | None,
    now: datetime | None = None,
) -> list[Check]:
    """One `Check` per precondition `env` sets: monitoring, rollback drill, minimum time in staging."""
    now = now or datetime.now(UTC)
    pre = env.preconditions
    checks = []
    if pre.monitoring is not None:
        checks.append(monitoring_check(pre.monitoring))
    if pre.rollback_drill_days is not None:
        aliases = Registry(tracking_uri).aliases(env.model_name)
        # A first promotion has no champion, a second no @previous: no rollback exists to rehearse.
        can_roll_back = env.alias in aliases and PREVIOUS_ALIAS in aliases
        checks.append(drill_check(env.model_name, audit, pre.rollback_drill_days, now, can_roll_back))
    checks.append(staging_time_check(pre.min_staging_hours, source_version_time, now))
    return checks


def staging_time_check(hours: float, approved_at: datetime | None, now: datetime) -> Check:
    """The source version was approved at least `hours` before `now`."""
    name = "min_staging_time"
    if approved_at is None:
        return Check(name, False, "the source version has no signed approval time to count from")
    waited = now - _aware(approved_at)
    shown = f"approved {waited.total_seconds() / 3600:.1f} h ago"
    if waited < timedelta(hours=hours):
        return Check(name, False, f"{shown}, fewer than the {hours:g} h required in the source environment")
    return Check(name, True, f"{shown} (at least {hours:g} h required)")


def drill_check(model: str, audit: AuditLog, days: float, now: datetime, can_roll_back: bool) -> Check:
    """The newest rollback drill of `model` in `audit` passed less than `days` ago (waived while
    the target has nothing to roll back to)."""
    name = "rollback_drill"
    if not can_roll_back:
        return Check(name, True, WAIVED_FIRST)
    ok, line, why = audit.verify()
    if not ok:
        return Check(name, False, f"the audit log cannot be trusted (line {line}): {why}")
    drills = [e for e in audit.entries() if e["event"] == DRILL_EVENT and e["model"] == model]
    if not drills:
        return Check(name, False, f"no rollback drill of {model} recorded; run `attestflow rollback-drill`")
    last = drills[-1]
    details: dict[str, Any] = last.get("details") or {}
    age = now - _aware(datetime.fromisoformat(last["time"]))
    when = f"the last drill (audit entry {last['seq']}, {age.total_seconds() / 86400:.1f} days ago)"
    if not details.get("passed"):
        failures = "; ".join(details.get("failures") or []) or "no reason recorded"
        return Check(name, False, f"{when} failed: {failures}")
    if age > timedelta(days=days):
        return Check(name, False, f"{when} is older than {days:g} days")
    return Check(name, True, f"{when} passed in {details.get('seconds', 0):.1f} s")


def monitoring_check(req: MonitoringRequirement) -> Check:
    """Through the Prefect API: the monitor deployment scheduled and unpaused; notifying automations enabled."""
    import httpx

    try:
        problems, found = _monitoring_problems(req)
    except (httpx.HTTPError, OSError) as e:
        raise UnavailableError(f"the Prefect API could not be read for the monitoring check: {e}") from None
    if problems:
        return Check("monitoring", False, "; ".join(problems))
    return Check("monitoring", True, "; ".join(found))


def _monitoring_problems(req: MonitoringRequirement) -> tuple[list[str], list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    problems: list[str] = []
    found: list[str] = []
    with get_client(sync_client=True) as client:
        unhealthy = client.api_healthcheck()
        if unhealthy is not None:
            raise UnavailableError(f"the Prefect API at {client.api_url} does not answer: {unhealthy}")
        try:
            deployment = client.read_deployment_by_name(req.deployment)
        except ObjectNotFound:
            problems.append(f"deployment {req.deployment} does not exist")
        else:
            active = [s for s in deployment.schedules if s.active]
            if deployment.paused:
                problems.append(f"deployment {req.deployment} is paused")
            if not active:
                problems.append(f"deployment {req.deployment} has no active schedule")
            if not deployment.paused and active:
                found.append(f"{req.deployment} scheduled ({len(active)} active schedule(s))")
        if req.automations:
            automations = all_automations(client)
            for event in (DRIFT_EVENT, CANARY_ROLLBACK_EVENT):
                problem, ok = notifying_automation(automations, event)
                (found if problem is None else problems).append(ok if problem is None else problem)
    return problems, found


def all_automations(client: Any, page: int = 200) -> list[Any]:
    """Every automation, a page at a time (the 3.8.8 server refuses the client's default null limit and sort)."""
    from prefect.client.schemas.sorting import AutomationSort

    found: list[Any] = []
    while True:
        batch = client.read_automations(sort=AutomationSort.NAME_ASC, limit=page, offset=len(found))
        found += batch
        if len(batch) < page:
            return found


def notifying_automation(automations: Iterable[Any], event: str) -> tuple[str | None, str]:
    """(None, what was found) when an enabled automation notifies on `event`; else (why not, "")."""
    expecting = [a for a in automations if any(_matches(p, event) for p in _expects(a.trigger))]
    notifying = [a for a in expecting if any(act.type in NOTIFYING_ACTIONS for act in a.actions)]
    enabled = [a for a in notifying if a.enabled]
    if enabled:
        return None, f"automation {enabled[0].name!r} notifies on {event}"
    if notifying:
        names = ", ".join(repr(a.name) for a in notifying)
        return f"the automation(s) notifying on {event} are disabled: {names}", ""
    if expecting:
        names = ", ".join(repr(a.name) for a in expecting)
        return f"no automation expecting {event} sends a notification (only {names}, without one)", ""
    return f"no automation expects {event}", ""


def _expects(trigger: Any) -> set[str]:
    """The event names a trigger (an event trigger, or a compound/sequence of them) expects."""
    nested = getattr(trigger, "triggers", None)
    if nested is not None:
        return set().union(*(_expects(t) for t in nested))
    return set(getattr(trigger, "expect", None) or ())


def _matches(pattern: str, event: str) -> bool:
    """Prefect's event name match: exact, or a trailing ``*`` as a prefix wildcard."""
    return pattern == event or (pattern.endswith("*") and event.startswith(pattern[:-1]))


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
