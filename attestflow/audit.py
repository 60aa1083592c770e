"""The workspace's append-only, hash-chained audit log.

One JSON line per event (a run started, a snapshot, each gate decision, an approval or a
rejection, a promotion, a canary result, a rollback), each carrying the SHA-256 of the line
before it, so that editing, deleting or reordering any line breaks the chain from there on.
Appends hold a file lock, which also serialises promotions in this workspace. The log says
who and what, never secrets: every text in it passes `attestflow.redact.redact` first.
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
    """The audit log of a workspace."""

    path: Path

    @classmethod
    def of(cls, workspace_root: Path) -> AuditLog:
        return cls(workspace_root / LOG_NAME)

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
        with open(self.path) as f:
            for line in f:
                if line.strip():
                    last, count = line.rstrip("\n"), count + 1
        return count, _line_hash(last) if last else GENESIS

    def append(
        self, event: str, *, model: str | None = None, version: str | None = None, **details: Any
    ) -> dict[str, Any]:
        """Append one event, chained to the line before it; returns the entry written."""
        with self.locked():
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
            head = {"seq": entry["seq"], "sha256": _line_hash(line)}
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
        """The recorded head (``seq``, ``sha256``), if any."""
        if not self.head_path.is_file():
            return None
        return dict(json.loads(self.head_path.read_text()))

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, in order (unverified: call `verify` first to trust them)."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def verify(self, anchors: list[dict[str, Any]] | None = None) -> tuple[bool, int | None, str]:
        """(ok, number of the first bad line, reason) for the whole chain.

        Each anchor (``seq``, ``sha256``) is a head recorded elsewhere (the head file, registry
        tags): the log must still contain that entry, or lines were deleted from its end.
        """
        heads = [h for h in [self.head(), *(anchors or [])] if h]
        if not self.path.is_file():
            return (False, 1, "the audit log is missing") if heads else (True, None, "no audit log yet")
        prev = GENESIS
        lines = self.path.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
            except ValueError:
                return False, number, "not valid JSON"
            if entry.get("prev") != prev:
                return False, number, "does not chain to the line before it (edited, deleted or reordered)"
            if entry.get("seq") != number:
                return False, number, f"sequence number {entry.get('seq')} where {number} was expected"
            prev = _line_hash(line)
        for head in heads:
            seq = int(head["seq"])
            if seq > len(lines):
                return (
                    False,
                    len(lines) + 1,
                    f"entry {seq} was recorded but is gone (lines deleted from the end)",
                )
            if _line_hash(lines[seq - 1]) != head["sha256"]:
                return False, seq, f"entry {seq} differs from the hash recorded for it"
        return True, None, f"{len(lines)} entries, chain intact"


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
