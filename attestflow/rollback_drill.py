"""The rollback drill: prove, on the real registry, that the way back works before it is needed.

A rollback is only as good as the version it returns to: if `previous` lost its evidence, was
tampered with or cannot be downloaded, the alias move refuses at the worst moment. The drill
verifies `previous` and the last approved versions with the one evidence check, then moves a
`drill` alias (never the serving one) to `previous` and back to the champion's version through
`attestflow.aliases.move_alias`, the path a real rollback takes, and times each step. Its
audit entry (``rollback_drill``: passed, seconds, versions, failures) is what prod's
precondition reads (`attestflow.preconditions`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from attestflow.aliases import clear_alias, move_alias
from attestflow.audit import AuditLog
from attestflow.errors import BadInputError, GateFailedError
from attestflow.evidence_check import REQUIREMENTS, EnvTrust
from attestflow.registry import Registry
from attestflow.verify import verify_model_uri

DRILL_ALIAS = "drill"
DRILL_MOVE = "rollback_drill_move"
"""The audit event of each drill alias move (not a serving move: alias drift does not track it)."""
LAST_APPROVED = 3
"""How many of the newest approved versions the drill verifies besides `previous`."""


@dataclass(frozen=True)
class DrillRecord:
    """What one rollback drill found, and how long each step took."""

    model_name: str
    champion: str
    previous: str | None
    versions: list[str]
    """Every version verified, `previous` first."""
    passed: bool
    seconds: float
    failures: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per step: ``verify vN``, ``to previous``, ``back to champion``, ``cleanup``."""


def approved_versions(audit: AuditLog, model_name: str, last: int = LAST_APPROVED) -> list[str]:
    """The newest `last` versions the log records an approval of, not later refused by their canary.

    In an environment promoted into, the approval is of the source version (``staging:MODEL/V``, before
    the copy exists): there, a completed promotion (``env_promotion_completed``) names the approved version.
    """
    entries = [e for e in audit.entries() if e.get("model") == model_name and e.get("version") is not None]
    refused = {
        str(e["version"])
        for e in entries
        if e["event"] == "canary" and not (e.get("details") or {}).get("passed", True)
    }
    approved = [
        str(e["version"])
        for e in reversed(entries)
        if e["event"] in ("approval", "env_promotion_completed") and str(e["version"]).isdigit()
    ]
    return [v for v in dict.fromkeys(approved) if v not in refused][:last]


def run_drill(
    model_name: str,
    *,
    alias: str,
    previous_alias: str,
    tracking_uri: str,
    public_key: Path,
    audit: AuditLog,
    drill_alias: str = DRILL_ALIAS,
    trust: EnvTrust | None = None,
) -> DrillRecord:
    """Verify `previous` and the last approved versions, move `drill_alias` there and back; audit it.

    `trust`: the versions were promoted into an environment (`attestflow.environments.environment_trust`).
    """
    if drill_alias in (alias, previous_alias):
        raise BadInputError(f"the drill alias {drill_alias!r} may not be the serving or previous alias")
    started = time.perf_counter()
    registry = Registry(tracking_uri)
    champion = registry.alias_version(model_name, alias)
    if champion is None:
        raise BadInputError(f"{model_name} has no @{alias} yet: there is nothing to roll back from")
    previous = registry.alias_version(model_name, previous_alias)
    failures: list[str] = []
    timings: dict[str, float] = {}
    if previous is None:
        failures.append(f"{model_name} has no @{previous_alias} version to roll back to")
    versions = list(dict.fromkeys([*([previous] if previous else []), *approved_versions(audit, model_name)]))
    for version in versions:
        t0 = time.perf_counter()
        result = verify_model_uri(
            f"models:/{model_name}/{version}",
            tracking_uri,
            public_key,
            require=REQUIREMENTS,
            trust=trust,
        )
        timings[f"verify v{version}"] = round(time.perf_counter() - t0, 3)
        failures += [f"v{version}: {f}" for f in result.failures]
    if previous is not None and not any(f.startswith(f"v{previous}: ") for f in failures):
        failures += _move_there_and_back(
            model_name, previous, champion, drill_alias, tracking_uri, public_key, audit, timings, trust=trust
        )
    seconds = round(time.perf_counter() - started, 3)
    record = DrillRecord(model_name, champion, previous, versions, not failures, seconds, failures, timings)
    audit.append(
        "rollback_drill",
        model=model_name,
        version=champion,
        passed=record.passed,
        seconds=seconds,
        versions=versions,
        failures=failures,
        timings=timings,
        previous=previous,
    )
    return record


def _move_there_and_back(
    model_name: str,
    previous: str,
    champion: str,
    drill_alias: str,
    tracking_uri: str,
    public_key: Path,
    audit: AuditLog,
    timings: dict[str, float],
    *,
    trust: EnvTrust | None,
) -> list[str]:
    """Point `drill_alias` at `previous`, then at `champion`, then remove it; the failures, if any."""
    parked = f"{drill_alias}_previous"
    steps = (("to previous", previous), ("back to champion", champion))
    try:
        for step, version in steps:
            t0 = time.perf_counter()
            move_alias(
                DRILL_MOVE,
                model_name,
                version,
                alias=drill_alias,
                previous_alias=parked,
                tracking_uri=tracking_uri,
                public_key=public_key,
                audit=audit,
                trust=trust,
            )
            timings[step] = round(time.perf_counter() - t0, 3)
    except GateFailedError as e:
        return list(e.reasons)
    finally:
        t0 = time.perf_counter()
        left = Registry(tracking_uri).aliases(model_name)
        for name in (a for a in (drill_alias, parked) if a in left):
            clear_alias(
                DRILL_MOVE, model_name, name, tracking_uri=tracking_uri, audit=audit, reason="drill done"
            )
        timings["cleanup"] = round(time.perf_counter() - t0, 3)
    return []
