"""A worker process for the promotion lock tests: promote, hold the lock, or try to take it.

Run as ``python -m tests.flows.promotion_worker MODE ...`` with ``PREFECT_API_URL`` naming the
shared server; each process has its own workspace, as a worker on another machine would.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attestflow.aliases
import attestflow.promotion_lock
from attestflow.audit import AuditLog
from attestflow.errors import exit_code_of


def _log(workspace: str, keys: str, location: str) -> AuditLog:
    key = Path(keys)
    return AuditLog.of(Path(workspace), key / "signing-key.pem", key / "signing-key.pub.pem", location)


def promote(uri: str, model: str, version: str, workspace: str, keys: str, location: str, spans: str) -> None:
    """Move @champion of `model` to `version`, the verification taking a second, its span appended to `spans`."""

    def slow_verify(target: str, *args: Any, **kwargs: Any) -> SimpleNamespace:
        start = time.time()
        time.sleep(1.0)
        with open(spans, "a") as f:
            f.write(f"{version} {start} {time.time()}\n")
        return SimpleNamespace(ok=True, failures=[], target=target)

    attestflow.aliases.verify_model_uri = slow_verify  # type: ignore[assignment]
    attestflow.aliases.move_alias(
        "promotion",
        model,
        version,
        alias="champion",
        previous_alias="previous",
        tracking_uri=uri,
        public_key=Path(keys) / "signing-key.pub.pem",
        audit=_log(workspace, keys, location),
    )


def hold(model: str, workspace: str, keys: str, location: str, seconds: str, ready: str) -> None:
    """Hold `model`'s promotion lock for `seconds`, touching `ready` once it is held."""
    with _log(workspace, keys, location).locked(model):
        Path(ready).touch()
        time.sleep(float(seconds))


def take(model: str, workspace: str, keys: str, location: str, timeout: str) -> None:
    """Try to take `model`'s promotion lock within `timeout` seconds."""
    attestflow.promotion_lock.LOCK_TIMEOUT_S = float(timeout)
    with _log(workspace, keys, location).locked(model):
        print("acquired")


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    modes: dict[str, Callable[..., None]] = {"promote": promote, "hold": hold, "take": take}
    try:
        modes[mode](*args)
    except Exception as e:
        code = exit_code_of(e)
        if code is None:
            raise
        print(f"{type(e).__name__}: {e}")
        sys.exit(code)
