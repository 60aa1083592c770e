"""Flow-run heartbeats that stop the moment the flow returns.

A flow run's heartbeats (``prefect.flow-run.heartbeat`` events) are what a Prefect server's
zombie detection watches: a run that stops sending them is marked crashed. Prefect's engine
sends them from a thread that sleeps in 1 s steps and joins it when the flow ends, which adds
up to a second to every flow run (measured: an empty flow run 1.13 s with them, 0.07 s without).
Where attestflow starts a flow in its own process (`attestflow run`, the benchmark), that caller
wraps the call in `prompt_heartbeats`: the engine's heartbeats are off inside it, and the flow
body (`flow_heartbeats`) sends the same events, for the same resources, at the same frequency,
from a thread that wakes as soon as it is told to stop. A flow started anywhere else (by a
worker, a deployment, or as a subflow) keeps the engine's own heartbeats: no flow run ever goes
without them, and a user's ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` is honoured either way.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_FREQUENCY: ContextVar[int | None] = ContextVar("attestflow_heartbeat_frequency", default=None)
"""Seconds between heartbeats that the flow body sends itself; None: the engine sends them."""


@contextmanager
def prompt_heartbeats() -> Iterator[None]:
    """Flow runs started inside the block send their heartbeats from `flow_heartbeats`, not the engine."""
    from prefect.settings import get_current_settings, temporary_settings

    frequency = get_current_settings().flows.heartbeat_frequency
    if frequency is None:  # the user turned heartbeats off
        yield
        return
    token = _FREQUENCY.set(frequency)
    try:
        with temporary_settings(updates={"flows.heartbeat_frequency": None}):
            yield
    finally:
        _FREQUENCY.reset(token)


@contextmanager
def flow_heartbeats() -> Iterator[None]:
    """Send the flow run's heartbeats while the block runs, when `prompt_heartbeats` took them from the engine."""
    from prefect.context import FlowRunContext

    frequency = _FREQUENCY.get()
    run = FlowRunContext.get()
    if frequency is None or run is None or run.flow_run is None:
        yield
        return
    resource, related = _heartbeat_event(run)
    stop = threading.Event()

    def beat() -> None:
        from prefect.events import emit_event

        while True:
            try:
                emit_event(event="prefect.flow-run.heartbeat", resource=resource, related=related)
            except Exception:  # a missed heartbeat is the server's to notice, never the flow's failure
                logging.getLogger(__name__).debug("heartbeat not sent", exc_info=True)
            if stop.wait(frequency):
                return

    # The thread sees this context's settings (the API URL), as the engine's heartbeat thread does.
    thread = threading.Thread(target=contextvars.copy_context().run, args=(beat,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)


def _heartbeat_event(run: Any) -> tuple[dict[str, str], list[Any]]:
    """The resource and related resources of the engine's heartbeat event for the flow run of `run`."""
    from prefect import __version__
    from prefect.events.related import RelatedResource, tags_as_related_resources

    flow_run = run.flow_run
    resource = {
        "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
        "prefect.resource.name": flow_run.name or "",
        "prefect.version": __version__,
    }
    related: list[Any] = []
    if flow_run.flow_id:
        related.append(
            RelatedResource.model_validate(
                {
                    "prefect.resource.id": f"prefect.flow.{flow_run.flow_id}",
                    "prefect.resource.role": "flow",
                    "prefect.resource.name": run.flow.name if run.flow else "",
                }
            )
        )
    if flow_run.deployment_id:
        related.append(
            RelatedResource.model_validate(
                {
                    "prefect.resource.id": f"prefect.deployment.{flow_run.deployment_id}",
                    "prefect.resource.role": "deployment",
                }
            )
        )
    return resource, related + tags_as_related_resources(set(flow_run.tags or []))
