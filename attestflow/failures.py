"""A release that stops without releasing leaves one ``release_failed`` entry in the audit log.

The audit log tells a model's whole story only if the releases that never reached a verdict
are in it too: bad input (exit 2), an outage (3), a stage or a gate that said no (1), a crash
(1). The entry names the stage that was running, the one-line reason (redacted, as every text
in the log is), the exit code and the flow run. A refusal the log already holds
(``release_refused``, raised as an audited `GateFailedError`) is not written twice, and
writing the entry never hides the error that stopped the release.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from attestflow.audit import AuditLog
from attestflow.errors import GateFailedError, exit_code_of, first_line, message_line
from attestflow.records import AuditEvent

MAX_REASON = 500
"""Characters of the reason kept: one line, not a traceback."""


@dataclass(frozen=True)
class ReleaseFailure:
    """Where and why a release stopped, and the exit code the CLI gives it."""

    stage: str
    reason: str
    exit_code: int

    @classmethod
    def of(cls, stage: str, e: BaseException) -> ReleaseFailure:
        """A domain error's own first line and exit code; any other error as its type and first line, exit 1."""
        code = exit_code_of(e)
        reason = message_line(e) if code is not None else first_line(e)
        return cls(stage, reason[:MAX_REASON], code or 1)

    def audit_events(self) -> list[AuditEvent]:
        details = {"stage": self.stage, "reason": self.reason, "exit_code": self.exit_code}
        return [AuditEvent("release_failed", details, names_run=True)]


@contextmanager
def failure_recorded(
    audit: AuditLog, model: str, actor: str, flow_run_id: str, stage: Callable[[], str]
) -> Iterator[None]:
    """Append ``release_failed`` for an error raised inside, naming the stage `stage()` says; then re-raise it."""
    try:
        yield
    except Exception as e:
        if not (isinstance(e, GateFailedError) and e.audited):
            _append(audit, model, actor, flow_run_id, ReleaseFailure.of(stage(), e))
        raise


def _append(audit: AuditLog, model: str, actor: str, flow_run_id: str, failure: ReleaseFailure) -> None:
    """Append the failure; an append that fails is logged, never raised over the release's own error."""
    try:
        for e in failure.audit_events():
            audit.append(e.event, model=model, actor=actor, flow_run_id=flow_run_id, **e.details)
    except Exception as append_error:
        logging.getLogger(__name__).warning(
            "release_failed could not be audited: %s", first_line(append_error)
        )
