"""Promotion is serialised per model: by the Prefect server when one is shared, by a file lock otherwise.

Reading an alias, verifying the version, moving the alias and auditing the move must not
interleave with another promotion of the same model, or two releases both become champion and
the log tells one story while the registry tells another. Workers on several machines share
no file system, only the Prefect server (and the registry), so with a Prefect API server
configured the lock is that server's own global concurrency limit ``attestflow-promote-<model>``
(limit 1, created on first use, held with a lease that Prefect renews and that expires if the
holder dies, so a killed worker does not block the model for good). The embedded default (no
API URL, or this process's own temporary server) runs on one machine and keeps the file lock.
Both re-enter within a thread, and both give up after `LOCK_TIMEOUT_S` with `UnavailableError`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from uuid import UUID

from filelock import FileLock, Timeout

from attestflow.errors import BadInputError, UnavailableError

LOCK_TIMEOUT_S = 120.0
"""How long a promotion or an audit append waits for another to finish before giving up."""
LEASE_S = 60.0
"""The concurrency slot's lease (Prefect's minimum): renewed while held, freed this long after a crash."""
PREFIX = "attestflow-promote-"
RETRY_S = 0.05
"""First wait before asking a busy server again (doubling up to 1 s)."""

_FILE_LOCKS: dict[str, FileLock] = {}
"""One lock object per file, so that nested holds in one thread re-enter instead of deadlocking."""
_MUTEX = threading.Lock()
_held = threading.local()
_ensured: set[tuple[str, str]] = set()
"""(server, limit name) pairs known to exist with limit 1 in this process."""


@contextmanager
def file_lock(path: Path, what: str = "the audit log") -> Iterator[None]:
    """Hold the file lock at `path` (re-entrant within a thread); `UnavailableError` after `LOCK_TIMEOUT_S`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _MUTEX:
        lock = _FILE_LOCKS.setdefault(str(path), FileLock(str(path)))
    try:
        lock.acquire(timeout=LOCK_TIMEOUT_S)
    except Timeout:
        raise UnavailableError(
            f"the lock of {what} ({path}) was not free within {LOCK_TIMEOUT_S:g} s: another process holds it"
        ) from None
    try:
        yield
    finally:
        lock.release()


def shared_api_url() -> str | None:
    """The Prefect API server this process talks to, unless it is none or this process's own temporary one."""
    from prefect.settings import PREFECT_API_URL

    url = str(PREFECT_API_URL.value() or "").rstrip("/")
    if not url:
        return None
    # The embedded default's server (and the test harness's) is a subprocess this process started.
    server = sys.modules.get("prefect.server.api.server")
    own = getattr(getattr(server, "SubprocessASGIServer", None), "_instances", {})
    if any(str(getattr(s, "api_url", "")).rstrip("/") == url for s in own.values()):
        return None
    return url


def limit_name(model: str | None) -> str:
    """The global concurrency limit that serialises `model`'s promotions (and audit appends)."""
    if model is None:
        return PREFIX.rstrip("-")
    slug = re.sub(r"[^A-Za-z0-9._-]", "-", model)
    return PREFIX + (slug if slug == model else f"{slug}-{hashlib.sha256(model.encode()).hexdigest()[:8]}")


@contextmanager
def promotion_lock(model: str | None, fallback: Path) -> Iterator[None]:
    """Hold `model`'s promotion lock: the Prefect limit with a server configured, else the file `fallback`."""
    url = shared_api_url()
    if url is None:
        with file_lock(fallback):
            yield
        return
    name = limit_name(model)
    held: dict[str, int] = _held.__dict__.setdefault("counts", {})
    if held.get(name):
        held[name] += 1
        try:
            yield
        finally:
            held[name] -= 1
        return
    with ExitStack() as stack:
        _acquire(stack, url, name)
        held[name] = 1
        try:
            yield
        finally:
            held[name] = 0


def _acquire(stack: ExitStack, url: str, name: str) -> None:
    """Enter a slot of limit `name` on `stack`; a slot not had in time, or a server not reached, is `UnavailableError`.

    The slot is leased as `prefect.concurrency.sync.concurrency` leases it (renewed while held,
    released on exit), but asked for here: a Prefect server on SQLite answers 503 while it writes
    the run's events, and Prefect's client would wait 2 s before asking again; this asks again
    within `RETRY_S` (and waits as long as the server says when the slot is taken).
    """
    from prefect.concurrency._leases import maintain_concurrency_lease

    _ensure_limit(url, name)
    lease_id = _increment(url, name)
    stack.callback(_release, url, name, lease_id)
    stack.enter_context(maintain_concurrency_lease(lease_id, LEASE_S, raise_on_lease_renewal_failure=True))


def _increment(url: str, name: str) -> UUID:
    """Take the one slot of limit `name` with a lease; its id."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    deadline = time.monotonic() + LOCK_TIMEOUT_S
    retry = RETRY_S
    try:
        with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}), get_client(sync_client=True) as client:
            while True:
                try:
                    body = client.increment_concurrency_slots_with_lease(
                        names=[name], slots=1, mode="concurrency", lease_duration=LEASE_S
                    ).json()
                    return UUID(body["lease_id"])
                except httpx.HTTPStatusError as e:
                    status = e.response.status_code
                    if status not in (423, 503):  # 423: the slot is taken; 503: the server is busy
                        raise
                    wait = float(e.response.headers.get("Retry-After", retry)) if status == 423 else retry
                retry = min(2 * retry, 1.0)
                if time.monotonic() + wait > deadline:
                    raise TimeoutError
                time.sleep(wait)
    except TimeoutError:
        raise UnavailableError(
            f"the promotion lock {name} on the Prefect server {url} was not free within"
            f" {LOCK_TIMEOUT_S:g} s: another promotion of the model holds it"
        ) from None
    except Exception as e:  # the server unreachable or refusing: nothing was acquired
        raise UnavailableError(f"the promotion lock {name} on the Prefect server {url}: {e}") from None


def _release(url: str, name: str, lease_id: UUID) -> None:
    """Give the slot of `lease_id` back; a failure only warns, since the lease runs out by itself."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(lease_id)
    except Exception as e:  # what it guarded is done; the lease expires on its own after LEASE_S
        logging.getLogger(__name__).warning(
            "could not release the promotion lock %s on %s (its lease ends in %g s): %s",
            name,
            url,
            LEASE_S,
            e,
        )


def _ensure_limit(url: str, name: str) -> None:
    """Create the limit `name` with one slot if missing; one that would not serialise is refused."""
    if (url, name) in _ensured:
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                with suppress(ObjectAlreadyExists):  # another worker created it first
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
                limit = client.read_global_concurrency_limit_by_name(name)
    except Exception as e:
        raise UnavailableError(f"the Prefect server {url} did not answer for the lock {name}: {e}") from None
    if limit.limit != 1 or not limit.active:
        state = f"limit {limit.limit}" if limit.active else "inactive"
        raise BadInputError(
            f"the concurrency limit {name} on {url} is {state}, so promotions of the model would not be"
            f" serialised; set it back with `prefect gcl update {name} --limit 1 --enable`"
        )
    _ensured.add((url, name))
