"""Where the audit log is kept: a file (in the workspace or any folder), or an object under an S3 prefix.

A workspace of its own is enough on one machine; workers on several machines that release the
same models need one log, or each keeps a chain of its own and none shows the whole history.
`audit_location` is the one place that decides where the log lives: the config's
``audit.location``, else ``$ATTESTFLOW_AUDIT_LOG``, else the workspace. Both stores add a line
only on top of the log they just read: the file under a file lock, S3 with a conditional put
(``If-Match`` on the ETag read, ``If-None-Match: *`` for the first line) retried on a conflict,
so two writers never lose a line even where nothing else serialises them. The signed head is
written the same way and only ever forward: a slower writer never puts an older head over a
newer one. S3 credentials and the endpoint come from the environment (boto3's own chain).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from attestflow.errors import BadInputError, UnavailableError
from attestflow.promotion_lock import file_lock

LOG_NAME = "audit.jsonl"
ENV = "ATTESTFLOW_AUDIT_LOG"
CONFLICT_RETRIES = 50
"""Conditional puts that lost to another writer before an append gives up (each one re-reads the log)."""

NextLine = Callable[[bytes | None], tuple[int, str]]
"""Given the log's current content (None: no log yet), the next entry's number and its line."""
HeadOf = Callable[[int, str], bytes]
"""The head file's content naming entry (number, line) as the newest."""


def audit_location(configured: str | None) -> str | None:
    """Where the audit log lives: `configured`, else ``$ATTESTFLOW_AUDIT_LOG``, else None (the workspace)."""
    return configured or os.environ.get(ENV) or None


def open_store(location: str | None, workspace: Path) -> FileStore | S3Store:
    """The store of a log at `location`: a folder, a ``.jsonl`` file, or ``s3://BUCKET/PREFIX/``; None: the workspace."""
    if not location:
        return FileStore(workspace / LOG_NAME)
    if location.startswith("s3://"):
        bucket, _, key = location.removeprefix("s3://").partition("/")
        if not bucket:
            raise BadInputError(
                f"the audit log location {location!r} names no bucket: use s3://BUCKET/PREFIX/"
            )
        return S3Store(bucket, _log_key(key.strip("/")))
    if "://" in location:
        raise BadInputError(
            f"the audit log location {location!r} is neither a folder nor s3://BUCKET/PREFIX/"
        )
    return FileStore(Path(_log_key(str(Path(location).expanduser()))))


def _log_key(where: str) -> str:
    """The log itself when `where` names a ``.jsonl``, else ``audit.jsonl`` in that folder or prefix."""
    if where.endswith(".jsonl"):
        return where
    return f"{where}/{LOG_NAME}" if where else LOG_NAME


def _head_seq(head: bytes | None) -> int:
    """The entry number a head names; 0 for none, or for one that is not a head (it is overwritten)."""
    try:
        seq = json.loads(head or b"{}").get("seq", 0)
    except (ValueError, AttributeError):
        return 0
    return seq if isinstance(seq, int) else 0


@dataclass(frozen=True)
class FileStore:
    """The log as a file, appended under a file lock beside it; the head replaced atomically."""

    path: Path

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def head_name(self) -> str:
        return self.name + ".head"

    @property
    def head_path(self) -> Path:
        return self.path.with_name(self.head_name)

    def read(self) -> bytes | None:
        return self.path.read_bytes() if self.path.is_file() else None

    def read_head(self) -> bytes | None:
        return self.head_path.read_bytes() if self.head_path.is_file() else None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the log's file lock (re-entrant within a thread): no other append runs meanwhile."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            yield

    def cut_tail(self, size: int) -> str:
        """Move the log's last `size` bytes to the ``.torn`` file beside it (call it holding `exclusive`); its name."""
        kept = self.path.with_name(self.name + ".torn")
        with open(self.path, "r+b") as log:
            end = log.seek(0, os.SEEK_END)
            log.seek(end - size)
            tail = log.read()
            with open(kept, "ab") as f:
                f.write(tail + b"\n")
                f.flush()
                os.fsync(f.fileno())
            log.truncate(end - size)
            os.fsync(log.fileno())
        return kept.name

    def append(self, next_line: NextLine, head_of: HeadOf) -> str:
        """Add the line `next_line` makes from the current log, then the head naming it; returns the line."""
        with self.exclusive():
            seq, line = next_line(self.read())
            with open(self.path, "a") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
            tmp = self.head_path.with_name(self.head_path.name + ".tmp")
            tmp.write_bytes(head_of(seq, line))
            tmp.replace(self.head_path)
        return line


@dataclass(frozen=True)
class S3Store:
    """The log as one S3 object, rewritten by conditional puts; its head is the object beside it."""

    bucket: str
    key: str

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def head_name(self) -> str:
        return self.name + ".head"

    @property
    def head_key(self) -> str:
        return self.key + ".head"

    def read(self) -> bytes | None:
        got = self._get(self.key)
        return got[0] if got else None

    def read_head(self) -> bytes | None:
        got = self._get(self.head_key)
        return got[0] if got else None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Nothing to hold: each put is whole and conditional, so appends need no lock of the store's own."""
        yield

    def append(self, next_line: NextLine, head_of: HeadOf) -> str:
        """Add the line `next_line` makes from the log as read, retried while another writer got there first."""
        for attempt in range(CONFLICT_RETRIES):
            got = self._get(self.key)
            body, etag = got if got else (b"", None)
            seq, line = next_line(got[0] if got else None)
            if self._put(self.key, body + line.encode() + b"\n", etag):
                self._advance_head(seq, head_of(seq, line))
                return line
            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))  # noqa: S311 - back-off jitter, not a secret
        raise UnavailableError(
            f"the audit log {self.location} changed under {CONFLICT_RETRIES} appends in a row; try again"
        )

    def _advance_head(self, seq: int, head: bytes) -> None:
        """Write `head` unless the head there already names entry `seq` or a later one."""
        for _ in range(CONFLICT_RETRIES):
            got = self._get(self.head_key)
            if (got and _head_seq(got[0]) >= seq) or self._put(self.head_key, head, got[1] if got else None):
                return
        raise UnavailableError(f"the audit head beside {self.location} kept changing; try again")

    def _get(self, key: str) -> tuple[bytes, str] | None:
        """(content, ETag) of `key`, None when there is no such object."""
        try:
            obj = _client().get_object(Bucket=self.bucket, Key=key)
            return obj["Body"].read(), obj["ETag"]
        except Exception as e:
            if _code(e) in ("NoSuchKey", "404"):
                return None
            raise self._unavailable("read", e) from None

    def _put(self, key: str, body: bytes, etag: str | None) -> bool:
        """Write `key` only if it still has `etag` (None: only if it does not exist); False when it changed."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            _client().put_object(Bucket=self.bucket, Key=key, Body=body, **condition)
            return True
        except Exception as e:
            if _code(e) in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409"):
                return False
            raise self._unavailable("written", e) from None

    def _unavailable(self, verb: str, e: Exception) -> UnavailableError:
        return UnavailableError(f"the audit log {self.location} could not be {verb}: {type(e).__name__}: {e}")


def _code(e: Exception) -> str:
    """The S3 error code of a botocore `ClientError`; "" for any other error."""
    response: Any = getattr(e, "response", None)
    return str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


_CLIENT_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
)
_CLIENT_MUTEX = threading.Lock()


def _client() -> Any:
    """A boto3 S3 client configured from the environment alone (one per distinct environment)."""
    return _client_for(tuple(os.environ.get(k) for k in _CLIENT_ENV))


@lru_cache(maxsize=8)
def _client_for(env: tuple[str | None, ...]) -> Any:
    import boto3
    from botocore.config import Config

    with _CLIENT_MUTEX:  # sessions are not thread-safe to create clients from
        return boto3.session.Session().client(
            "s3",
            config=Config(
                connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
            ),
        )
