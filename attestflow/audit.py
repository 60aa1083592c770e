"""The workspace's append-only, hash-chained audit log.

One JSON line per event (a run started, a snapshot, each gate decision, an approval or a
rejection, a promotion, a canary result, a rollback), each carrying the SHA-256 of the line
before it, so that editing, deleting or reordering any line breaks the chain from there on.
Appends hold a file lock, which also serialises promotions in this workspace. The log says
who and what, never secrets: every text in it passes `attestflow.redact.redact` first.
Each append re-signs the head file with the workspace's release key (`attestflow.audit_head`),
so appending to the log takes the key and verifying it takes the trusted public key.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from attestflow.audit_head import HeadError, signed_head, signed_position
from attestflow.errors import BadInputError
from attestflow.keys import release_keypair, trusted_public_key
from attestflow.lineage import actor
from attestflow.redact import redact

GENESIS = "0" * 64
_LOCKS: dict[str, FileLock] = {}
"""One lock object per file, so that nested holds in one thread re-enter instead of deadlocking."""
LOG_NAME = "audit.jsonl"


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _line_hash(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()


@dataclass(frozen=True)
class AuditLog:
    """The audit log of a workspace (the log's folder), its head signed with the release key."""

    path: Path
    private_key: Path | None = None
    """The configured release key (`sign.private_key`); unset, or without `public_key`: the workspace's."""
    public_key: Path | None = None
    """The configured trusted key (`sign.public_key`); unset: the workspace's."""

    @classmethod
    def of(
        cls, workspace_root: Path, private_key: Path | None = None, public_key: Path | None = None
    ) -> AuditLog:
        return cls(workspace_root / LOG_NAME, private_key, public_key)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the workspace's audit/promotion lock (re-entrant within a thread)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = str(self.path) + ".lock"
        lock = _LOCKS.setdefault(key, FileLock(key, timeout=120))
        with lock:
            yield

    def _last(self) -> tuple[int, str]:
        if not self.path.is_file():
            return 0, GENESIS
        last = ""
        count = 0
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    last, count = line.rstrip("\n"), count + 1
        return count, _line_hash(last) if last else GENESIS

    def append(
        self, event: str, *, model: str | None = None, version: str | None = None, **details: Any
    ) -> dict[str, Any]:
        """Append one event, chained to the line before it; returns the entry written."""
        with self.locked():
            signing_key = release_keypair(self.private_key, self.public_key, self.path.parent).private_key
            seq, prev = self._last()
            entry = {
                "seq": seq + 1,
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "event": event,
                "actor": redact(actor(details.pop("actor", None))),
                "model": model,
                "version": version,
                "details": _clean(details),
                "prev": prev,
            }
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"))
            with open(self.path, "a") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
            head = signed_head(self.path.name, entry["seq"], _line_hash(line), signing_key)
            tmp = self.head_path.with_name(self.head_path.name + ".tmp")
            tmp.write_text(json.dumps(head))
            tmp.replace(self.head_path)
        mirror_to_prefect(entry)
        return entry

    @property
    def head_path(self) -> Path:
        """Where the newest entry's number and hash are kept, so truncation is detectable."""
        return self.path.with_name(self.path.name + ".head")

    def head(self) -> dict[str, Any] | None:
        """The recorded head (``seq``, ``sha256``, signed ``envelope``), if any; a head file that is not one is `MalformedAuditError`."""
        if not self.head_path.is_file():
            return None
        try:
            head = json.loads(self.head_path.read_bytes())
            seq, digest = head["seq"], head["sha256"]
        except (ValueError, TypeError, KeyError):
            raise MalformedAuditError(f"the head file {self.head_path.name} is corrupt") from None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1 or not isinstance(digest, str):
            raise MalformedAuditError(f"the head file {self.head_path.name} is corrupt")
        return dict(head)

    def _lines(self) -> list[str]:
        """The log's lines as text; bytes that are not UTF-8 are replaced (and break the chain there)."""
        return self.path.read_bytes().decode("utf-8", errors="replace").splitlines()

    def entries(self, *, skipped: list[int] | None = None) -> list[dict[str, Any]]:
        """Every well-formed entry, in order (unverified: call `verify` first to trust them).

        A line that is not an entry is left out, and its number appended to `skipped`.
        """
        if not self.path.is_file():
            return []
        out = []
        for number, line in enumerate(self._lines(), start=1):
            if not line.strip():
                continue
            entry, _ = parse_entry(line)
            if entry is None:
                if skipped is not None:
                    skipped.append(number)
                continue
            out.append(entry)
        return out

    def verify(self, anchors: list[dict[str, Any]] | None = None) -> tuple[bool, int | None, str]:
        """(ok, number of the first bad line, reason) for the whole chain.

        Each anchor (``seq``, ``sha256``) is a head recorded elsewhere (the head file, registry
        tags): the log must still contain that entry, or lines were deleted from its end. The
        head file is required, signed by the trusted key and naming the last line.
        """
        try:
            head = self.head()
        except MalformedAuditError as e:
            return False, None, str(e)
        heads = [h for h in [head, *(anchors or [])] if h and str(h.get("seq", "")).isdigit()]
        if not self.path.is_file():
            return (False, 1, "the audit log is missing") if heads else (True, None, "no audit log yet")
        prev = GENESIS
        lines = self._lines()
        for number, line in enumerate(lines, start=1):
            entry, problem = parse_entry(line)
            if entry is None:
                return False, number, problem
            if entry.get("prev") != prev:
                return False, number, "does not chain to the line before it (edited, deleted or reordered)"
            if entry.get("seq") != number:
                return False, number, f"sequence number {entry.get('seq')} where {number} was expected"
            prev = _line_hash(line)
        for anchor in heads:
            seq = int(anchor["seq"])
            if seq > len(lines):
                return (
                    False,
                    len(lines) + 1,
                    f"entry {seq} was recorded but is gone (lines deleted from the end)",
                )
            if _line_hash(lines[seq - 1]) != anchor["sha256"]:
                return False, seq, f"entry {seq} differs from the hash recorded for it"
        unsigned = self._unsigned(head, lines)
        if unsigned is not None:
            return False, *unsigned
        return True, None, f"{len(lines)} entries, chain intact"

    def _unsigned(self, head: dict[str, Any] | None, lines: list[str]) -> tuple[int, str] | None:
        """(line, reason) when the signed head does not cover every line; None when it does."""
        if not lines:
            return None
        if head is None:
            return len(lines), f"the signed head {self.head_path.name} is missing"
        try:
            seq, digest = signed_position(head, trusted_public_key(self.public_key, self.path.parent))
        except (HeadError, BadInputError) as e:
            return len(lines), str(e)
        if seq < len(lines):
            return (
                seq + 1,
                f"entries {seq + 1} to {len(lines)} come after the signed head (appended without the key)",
            )
        if seq > len(lines) or _line_hash(lines[seq - 1]) != digest:
            return min(seq, len(lines)), f"the signed head names entry {seq}, which the log does not hold"
        return None


class MalformedAuditError(ValueError):
    """A line of the audit log, or its head file, is not what the log writes."""


ENTRY_KEYS = {"seq": int, "time": str, "event": str, "actor": str, "details": dict, "prev": str}
"""The fields every entry has, and their JSON types (``model`` and ``version`` may be null)."""


def parse_entry(line: str) -> tuple[dict[str, Any] | None, str]:
    """(the entry, "") for a well-formed line, else (None, what is wrong with it)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None, "not valid JSON"
    if not isinstance(entry, dict):
        return None, f"a JSON {type(entry).__name__}, not an entry object"
    for key, kind in ENTRY_KEYS.items():
        if not isinstance(entry.get(key), kind) or (kind is int and isinstance(entry.get(key), bool)):
            return None, f"an entry without a valid {key!r}"
    for key in ("model", "version"):
        if key not in entry or not isinstance(entry[key], str | int | None) or isinstance(entry[key], bool):
            return None, f"an entry without a valid {key!r}"
    return entry, ""


def mirror_to_prefect(entry: dict[str, Any]) -> None:
    """Emit the entry as a Prefect event ``attestflow.audit.<event>`` when inside a Prefect run."""
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    from prefect import events

    resource = {"prefect.resource.id": f"attestflow.model.{entry['model'] or 'workspace'}"}
    if entry["version"]:
        resource["attestflow.version"] = str(entry["version"])
    events.emit_event(event=f"attestflow.audit.{entry['event']}", resource=resource, payload=entry)


def model_events(entries: list[dict[str, Any]], model: str | None = None) -> list[dict[str, Any]]:
    """Every event of `model` (of every model when None), oldest first: runs, refusals, failures and moves."""
    return [e for e in entries if model is None or e["model"] == model]


def champion_history(entries: list[dict[str, Any]], model: str | None = None) -> list[dict[str, Any]]:
    """The alias moves (promotions, canary roll-backs and rollbacks), oldest first."""
    moves = ("promotion", "rollback", "canary_rollback")
    return [e for e in entries if e["event"] in moves and (model is None or e["model"] == model)]


def registry_anchors(tracking_uri: str) -> list[dict[str, Any]]:
    """Audit heads mirrored as ``audit_head`` tags (``seq:sha256``) on registered models."""
    from attestflow.registry import Registry

    anchors = []
    for tags in Registry(tracking_uri).model_tags().values():
        seq, _, digest = tags.get("audit_head", "").partition(":")
        if seq.isdigit() and digest:
            anchors.append({"seq": int(seq), "sha256": digest})
    return anchors
