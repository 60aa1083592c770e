"""How a paused release and the person deciding on it talk: flow run inputs on the Prefect server.

The release publishes what it asks (`ApprovalRequest`, under `REQUEST_KEY`) before it
pauses, so that an approver's CLI can sign a statement about exactly that bundle, and after
each answer it publishes the outcome under a key named after that pause. The CLI resumes
the run with its answer and then waits for that outcome, so it reports what the flow decided,
not what it sent: a refused answer leaves the flow waiting, and the CLI says so and why.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any
from uuid import UUID

from attestflow.approval import ApprovalRequest, Verdict, decision_word
from attestflow.errors import BadInputError, UnavailableError

REQUEST_KEY = "approval-request"
PAUSE_PREFIX = "approval-"
"""Keys of the waits for approval start with this; each wait of a run has its own (`pause_key`)."""


def pause_key(digest: str, attempt: int) -> str:
    """The key of a run's `attempt`-th wait for an approval of the bundle `digest`.

    A wait's answer is kept under its key, so a suspended release, which starts again from the
    top when resumed, gets back the answers its earlier executions received, in order, and
    waits again only where none came; a new wait (after a refused answer) has a new key.
    """
    return f"{PAUSE_PREFIX}{digest[:12]}-{attempt}"


def outcome_key(key: str) -> str:
    """The flow run input under which the flow says what it made of the answer to the wait `key`."""
    return f"{key}-outcome"


def publish_request(request: ApprovalRequest) -> None:
    """Publish what the flow run in progress waits on (once per run)."""
    from prefect.input import create_flow_run_input, read_flow_run_input

    if read_flow_run_input(REQUEST_KEY) is None:
        create_flow_run_input(REQUEST_KEY, asdict(request))


def publish_outcome(key: str, approve: bool, verdict: Verdict, pending: int = 0) -> bool:
    """Say, for the answer to the wait `key`, whether the flow accepted it and if not, why
    (and, for an approval that counted, how many more approvals it still waits for: `pending`).

    False when an earlier execution of the run already said it: the answer was judged (and
    audited) then, and a resumed run replaying it must not do either again.
    """
    from prefect.input import create_flow_run_input, read_flow_run_input

    if read_flow_run_input(outcome_key(key)) is not None:
        return False
    outcome = {
        "accepted": verdict.refused is None,
        "decision": decision_word(approve),
        "approver": verdict.approver,
        "refused": verdict.refused,
        **({"pending": pending} if pending > 0 else {}),
    }
    create_flow_run_input(outcome_key(key), outcome)
    return True


def _call(what: str, run_id: UUID, fn: Any, *args: Any) -> Any:
    """Call the Prefect API; an unreachable server is `UnavailableError`, any other failure bad input."""
    import httpx

    try:
        return fn(*args)
    except (httpx.TransportError, OSError) as e:
        raise UnavailableError(f"the Prefect API did not answer: {type(e).__name__}: {e}") from e
    except Exception as e:  # the Prefect client raises several types for unknown or unpaused runs
        first = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInputError(
            f"cannot {what} flow run {run_id}: {first} (is PREFECT_API_URL set to the server?)"
        ) from None


def read_request(run_id: UUID) -> ApprovalRequest:
    """What the paused run `run_id` waits on; bad input when it does not wait for an approval."""
    from prefect.input import read_flow_run_input

    raw = _call("read the approval request of", run_id, read_flow_run_input, REQUEST_KEY, run_id)
    if not isinstance(raw, dict):
        raise BadInputError(f"flow run {run_id} is not waiting for an approval")
    return ApprovalRequest.from_json(raw)


def send_answer(run_id: UUID, answer: dict[str, Any]) -> str:
    """Resume the paused run with `answer`; returns the key of the pause it answered."""
    from prefect import get_client
    from prefect.flow_runs import resume_flow_run

    def current_key() -> str | None:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
        return state.state_details.pause_key if state is not None and state.is_paused() else None

    key = _call("read", run_id, current_key)
    if not key or not key.startswith(PAUSE_PREFIX):
        raise BadInputError(f"flow run {run_id} is not paused for an approval")
    _call("resume", run_id, resume_flow_run, run_id, answer)
    return str(key)


def wait_for_outcome(run_id: UUID, key: str, timeout_s: float) -> dict[str, Any] | None:
    """The flow's outcome of the answer to the wait `key`, or None when none came within `timeout_s`."""
    from prefect.input import read_flow_run_input

    deadline = time.monotonic() + timeout_s
    while True:
        outcome = _call("read the outcome of", run_id, read_flow_run_input, outcome_key(key), run_id)
        if isinstance(outcome, dict):
            return outcome
        if time.monotonic() >= deadline:
            return None
        time.sleep(1)
