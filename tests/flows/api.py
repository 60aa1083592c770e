"""The Prefect REST API as the tests read it.

A Prefect server on SQLite answers 503 when its database is busy (a loaded CI machine
with a flow writing beside the test); Prefect's own client retries 429, 502 and 503, so
the tests' direct calls do the same instead of failing on the first busy answer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

RETRIED = {429, 502, 503}


def call(method: str, url: str, *, json: Any = None, attempts: int = 8, timeout: float = 10) -> Any:
    """The JSON body of ``method url`` (None when empty), retried with backoff while the server is busy."""
    for attempt in range(attempts):
        try:
            response = httpx.request(method, url, json=json, timeout=timeout)
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
        else:
            if response.status_code not in RETRIED or attempt == attempts - 1:
                response.raise_for_status()
                return response.json() if response.content else None
        time.sleep(min(0.25 * 2**attempt, 4.0))
    raise AssertionError("unreachable")


def post(url: str, body: Any) -> Any:
    return call("POST", url, json=body)


def get(url: str) -> Any:
    return call("GET", url)


def delete(url: str) -> None:
    call("DELETE", url)


def wait_healthy(health_url: str, log: Path, what: str, timeout_s: float = 120) -> None:
    """Wait until `health_url` answers 200; fail the test with the end of the server's `log` if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(health_url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} did not start: {log.read_text()[-2000:]}")
