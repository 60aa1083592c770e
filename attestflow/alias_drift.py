"""Aliases moved outside attestflow: the registry's aliases against the last moves the audit log records.

Anyone with write access to the MLflow registry can point `@champion` anywhere (the UI, the
client), and MLflow keeps no signed record of it. attestflow's promise holds only for the
moves it made, so every alias it manages (the serving and previous aliases, and any alias an
audited event names) must be where the audit log last put it. A disagreement is drift: it is
named by `attestflow audit verify`, and the next release or rollback of that model refuses to
proceed until someone adopts the registry's state with a reason (an ``alias_adopted`` entry)
or sets the alias back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from attestflow.audit import AuditLog
from attestflow.errors import BadInputError, GateFailedError
from attestflow.registry import Registry

MOVES = ("promotion", "rollback", "canary_rollback")
"""Events of `attestflow.aliases.move_alias` and `clear_alias`: ``alias`` -> version (None: removed)."""
RESTORED = "alias_restored"
"""One alias put back to ``version`` (None: removed), e.g. the previous alias after a canary's no."""
ADOPTED = "alias_adopted"
"""The registry's aliases of a model accepted as audited: ``aliases`` maps alias -> version."""


@dataclass(frozen=True)
class AliasDrift:
    """One alias whose registry version is not the one the audit log last recorded."""

    model_name: str
    alias: str
    registry_version: str | None
    audited_version: str | None

    def __str__(self) -> str:
        return (
            f"{self.model_name}@{self.alias} is {_shown(self.registry_version)} in the registry"
            f" but {_shown(self.audited_version)} in the audit log"
        )


def _shown(version: str | None) -> str:
    return f"v{version}" if version is not None else "unset"


def audited_aliases(
    entries: Iterable[dict[str, Any]], model_name: str, previous_alias: str
) -> dict[str, str | None]:
    """Alias -> version (None: removed) of `model_name` as its audited events left them, oldest first."""
    state: dict[str, str | None] = {}
    for e in entries:
        details = e.get("details") or {}
        if e.get("model") != model_name or not isinstance(details, dict):
            continue
        version = None if e.get("version") is None else str(e["version"])
        if e.get("event") in MOVES and details.get("alias"):
            state[str(details["alias"])] = version
            left = details.get("previous")
            if left is not None and str(left) != version:
                state[str(details.get("previous_alias") or previous_alias)] = str(left)
        elif e.get("event") == RESTORED and details.get("alias"):
            state[str(details["alias"])] = version
        elif e.get("event") == ADOPTED and isinstance(details.get("aliases"), dict):
            state.update({str(a): None if v is None else str(v) for a, v in details["aliases"].items()})
    return state


def audited_models(entries: Iterable[dict[str, Any]]) -> list[str]:
    """Every model the audit log names, in first-seen order."""
    return list(dict.fromkeys(str(e["model"]) for e in entries if e.get("model")))


def alias_drift(
    model_name: str, *, alias: str, previous_alias: str, registry: Registry, audit: AuditLog
) -> list[AliasDrift]:
    """Each managed alias of `model_name` whose registry version differs from the audited one."""
    audited = audited_aliases(audit.entries(), model_name, previous_alias)
    current = registry.aliases(model_name)
    managed = sorted({alias, previous_alias, *audited})
    return [
        AliasDrift(model_name, a, current.get(a), audited.get(a))
        for a in managed
        if current.get(a) != audited.get(a)
    ]


def refuse_on_drift(
    event: str, model_name: str, *, alias: str, previous_alias: str, registry: Registry, audit: AuditLog
) -> None:
    """Raise `GateFailedError` (audited as ``<event>_refused``) while an alias of the model has drifted."""
    with audit.locked(model_name):
        drift = alias_drift(
            model_name, alias=alias, previous_alias=previous_alias, registry=registry, audit=audit
        )
        if not drift:
            return
        audit.append(f"{event}_refused", model=model_name, drift=[str(d) for d in drift])
    raise GateFailedError(
        [f"{event} refused: {d} (moved outside attestflow)" for d in drift]
        + [
            f"adopt the registry's aliases with `attestflow audit adopt {model_name} --reason ...`,"
            " or set them back to the audited versions"
        ],
        audited=True,
    )


def adopt(
    model_name: str, reason: str, *, alias: str, previous_alias: str, registry: Registry, audit: AuditLog
) -> list[AliasDrift]:
    """Record the registry's managed aliases of `model_name` as audited (``alias_adopted``); returns the drift adopted."""
    if not reason.strip():
        raise BadInputError("--reason is required: say why the move is adopted, for the audit trail")
    with audit.locked(model_name):
        drift = alias_drift(
            model_name, alias=alias, previous_alias=previous_alias, registry=registry, audit=audit
        )
        if drift:
            current = registry.aliases(model_name)
            managed = sorted({alias, previous_alias, *(d.alias for d in drift)})
            audit.append(
                ADOPTED,
                model=model_name,
                aliases={a: current.get(a) for a in managed},
                drift=[str(d) for d in drift],
                reason=reason,
            )
    return drift
