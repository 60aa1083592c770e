"""The append-only, hash-chained audit log, in the workspace or on storage that workers share.

One JSON line per event (a run started, a snapshot, each gate decision, an approval or a
rejection, a promotion, a canary result, a rollback), each carrying the SHA-256 of the line
before it, so that editing, deleting or reordering any line breaks the chain from there on.
Appends hold the model's promotion lock (`attestflow.promotion_lock`: a file lock in the
embedded default, the Prefect server's concurrency limit otherwise), which also serialises
promotions; the store (`attestflow.audit_store`: a file, or an S3 object written by
conditional puts) never loses a line whatever the lock. The log says who and what, never
secrets: every text in it passes `attestflow.redact.redact` first. Each append re-signs the
head with the release key (`attestflow.audit_head`, `attestflow.signers`), so appending to the
log takes the key and verifying it takes the trusted public key. An append to a file killed mid-write
can leave a torn last line (no newline, never under a signed head): readers leave it out, and
the next append cuts it off into ``audit.jsonl.torn`` and audits that (`TORN`); whole lines
that no head signed (killed between the line and its head) are named by the next append
(`UNSIGNED`) before its head covers them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestflow.audit_head import HeadError, signed_head, signed_position
from attestflow.audit_store import LOG_NAME, FileStore, NextLine, S3Store, audit_location, open_store
from attestflow.errors import BadInputError
from attestflow.keys import trusted_public_key
from attestflow.lineage import actor
from attestflow.promotion_lock import promotion_lock
from attestflow.redact import redact
from attestflow.settings import KeySpec
from attestflow.signers import signer_for

if TYPE_CHECKING:
    from attestflow.config import ReleaseConfig

GENESIS = "0" * 64
TORN = "audit_torn_line_cut"
"""The event recording a torn last line cut off the log file (and kept in ``<log>.torn``)."""
UNSIGNED = "audit_unsigned_lines"
"""The event naming whole lines of the log file that no signed head covered (an append killed before its head)."""


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


def _whole(content: bytes | None) -> tuple[list[str], bytes]:
    """The log's whole lines as text (bytes not UTF-8 replaced: they break the chain there), and what follows the last newline."""
    data = content or b""
    end = data.rfind(b"\n") + 1
    return data[:end].decode("utf-8", errors="replace").splitlines(), data[end:]


def _last(content: bytes | None) -> tuple[int, str]:
    """(number of entries, hash of the last line) of the log's content; (0, GENESIS) for none."""
    lines = [line for line in _whole(content)[0] if line.strip()]
    return len(lines), _line_hash(lines[-1]) if lines else GENESIS


def _next_line(
    event: str, who: str, model: str | None, version: str | None, details: dict[str, Any]
) -> NextLine:
    """What makes the entry's line from the log as it is when the store appends it."""

    def next_line(current: bytes | None) -> tuple[int, str]:
        seq, prev = _last(current)
        entry = {
            "seq": seq + 1,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": event,
            "actor": who,
            "model": model,
            "version": version,
            "details": details,
            "prev": prev,
        }
        return seq + 1, json.dumps(entry, sort_keys=True, separators=(",", ":"))

    return next_line


def _interrupted(store: FileStore | S3Store) -> list[tuple[str, dict[str, Any]]]:
    """The `TORN` and `UNSIGNED` entries an append killed mid-way calls for (call holding the store's lock).

    Only a file can tear, and only under its lock does a line beyond the head mean a crash (on
    S3 another worker may be between its put and its head). A torn line under a head that names
    more whole lines than there are is a signed line cut short: the append is refused.
    """
    if not isinstance(store, FileStore):
        return []
    lines, torn = _whole(store.read())
    try:
        head = _parse_head(store.read_head(), store.head_name)
    except MalformedAuditError:
        if torn.strip():
            raise
        head = None  # `verify` names a corrupt head; the one this append signs replaces it
    signed = head["seq"] if head is not None else 0
    notes: list[tuple[str, dict[str, Any]]] = []
    if torn.strip():
        if signed > len(lines):
            raise MalformedAuditError(
                f"the last line of {store.name} is cut short but the signed head names entry {signed}:"
                " not appended (restore the log from a copy)"
            )
        kept = store.cut_tail(len(torn))
        notes.append(
            (TORN, {"bytes": len(torn), "sha256": hashlib.sha256(torn).hexdigest(), "kept_in": kept})
        )
    if signed < len(lines):
        notes.append(
            (UNSIGNED, {"first": signed + 1, "last": len(lines), "last_sha256": _line_hash(lines[-1])})
        )
    return notes


def _parse_head(raw: bytes | None, name: str) -> dict[str, Any] | None:
    """The head file's content as a dict, None when there is none; `MalformedAuditError` when it is not a head."""
    if raw is None:
        return None
    try:
        head = json.loads(raw)
        seq, digest = head["seq"], head["sha256"]
    except (ValueError, TypeError, KeyError):
        raise MalformedAuditError(f"the head file {name} is corrupt") from None
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1 or not isinstance(digest, str):
        raise MalformedAuditError(f"the head file {name} is corrupt")
    return dict(head)


@dataclass(frozen=True)
class AuditLog:
    """The audit log of a workspace, kept where `location` says, its head signed with the release key."""

    workspace: Path
    """The workspace whose release key signs the head (and whose file lock serves the embedded default)."""
    key: KeySpec = field(default_factory=KeySpec)
    """The release key (the `sign` section's: a file, Secret block or token); none set: the workspace's."""
    location: str | None = None
    """A folder, a ``.jsonl`` file or ``s3://BUCKET/PREFIX/`` (`audit_location`); None: the workspace's file."""

    @classmethod
    def of(
        cls,
        workspace_root: Path,
        private_key: Path | None = None,
        public_key: Path | None = None,
        location: str | None = None,
        *,
        key: KeySpec | None = None,
    ) -> AuditLog:
        return cls(workspace_root, key or KeySpec(private_key=private_key, public_key=public_key), location)

    @classmethod
    def configured(cls, cfg: ReleaseConfig, workspace_root: Path) -> AuditLog:
        """The log that `cfg` names (``audit.location``, else ``$ATTESTFLOW_AUDIT_LOG``, else the workspace's).

        A location that is neither a folder nor ``s3://BUCKET/...`` is `BadInputError` here, before any stage.
        """
        location = audit_location(cfg.audit.location)
        open_store(location, workspace_root)
        return cls.of(workspace_root, location=location, key=cfg.sign.key_spec())

    @property
    def store(self) -> FileStore | S3Store:
        """Where the lines and the head are read and written."""
        return open_store(self.location, self.workspace)

    @property
    def path(self) -> Path:
        """The log file, for a log kept in a file."""
        store = self.store
        if not isinstance(store, FileStore):
            raise TypeError(f"the audit log {store.location} is not a file")
        return store.path

    @property
    def head_path(self) -> Path:
        """The head file beside a log kept in a file."""
        return self.path.with_name(self.path.name + ".head")

    @contextmanager
    def locked(self, model: str | None = None) -> Iterator[None]:
        """Hold `model`'s promotion/audit lock (re-entrant within a thread): `attestflow.promotion_lock`."""
        with promotion_lock(model, self.workspace / (LOG_NAME + ".lock")):
            yield

    def append(
        self, event: str, *, model: str | None = None, version: str | None = None, **details: Any
    ) -> dict[str, Any]:
        """Append one event, chained to the line before it, under `model`'s lock; returns the entry written.

        What an append killed mid-way left in a log file is audited first (`TORN`, `UNSIGNED`).
        """
        who = redact(actor(details.pop("actor", None)))
        with self.locked(model):
            signer = signer_for(self.key, self.workspace)
            store = self.store

            def head_of(seq: int, line: str) -> bytes:
                return json.dumps(signed_head(store.name, seq, _line_hash(line), signer)).encode()

            with store.exclusive():
                for note, about in _interrupted(store):
                    store.append(_next_line(note, who, None, None, about), head_of)
                line = store.append(_next_line(event, who, model, version, _clean(details)), head_of)
        entry: dict[str, Any] = json.loads(line)
        mirror_to_prefect(entry)
        return entry

    def head(self) -> dict[str, Any] | None:
        """The recorded head (``seq``, ``sha256``, signed ``envelope``), if any; a head file that is not one is `MalformedAuditError`."""
        return _parse_head(self.store.read_head(), self.store.head_name)

    def _lines(self, content: bytes | None = None) -> list[str]:
        """The log's whole lines as text (not a torn last line); bytes not UTF-8 are replaced (and break the chain)."""
        return _whole(self.store.read() if content is None else content)[0]

    def entries(self, *, skipped: list[int] | None = None) -> list[dict[str, Any]]:
        """Every well-formed entry, in order (unverified: call `verify` first to trust them).

        A line that is not an entry is left out, and its number appended to `skipped`.
        """
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
        store = self.store
        try:
            head = _parse_head(store.read_head(), store.head_name)
        except MalformedAuditError as e:
            return False, None, str(e)
        heads = [h for h in [head, *(anchors or [])] if h and str(h.get("seq", "")).isdigit()]
        content = store.read()
        if content is None:
            return (False, 1, "the audit log is missing") if heads else (True, None, "no audit log yet")
        prev = GENESIS
        lines, torn = _whole(content)
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
        cut = (
            f"; a torn last line ({len(torn)} bytes, an interrupted append) is not an entry"
            if torn.strip()
            else ""
        )
        return True, None, f"{len(lines)} entries, chain intact{cut}"

    def _unsigned(self, head: dict[str, Any] | None, lines: list[str]) -> tuple[int, str] | None:
        """(line, reason) when the signed head does not cover every line; None when it does."""
        if not lines:
            return None
        if head is None:
            return len(lines), f"the signed head {self.store.head_name} is missing"
        try:
            seq, digest = signed_position(head, trusted_public_key(self.key.public_key, self.workspace))
        except (HeadError, BadInputError) as e:
            return len(lines), str(e)
        if seq < len(lines):
            return (
                seq + 1,
                f"entries {seq + 1} to {len(lines)} come after the signed head (appended without the key,"
                " or by an append killed before it signed the head)",
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


AUDIT_LOG_TAG = "audit_log"
"""Registered-model tag naming the audit log whose head the model's ``audit_head`` tag mirrors."""


def log_identity(store: FileStore | S3Store) -> str:
    """Which log a store is, the same from any working folder: its S3 URI or its file's absolute path."""
    return store.location if isinstance(store, S3Store) else str(store.path.resolve())


def registry_anchors(tracking_uri: str, log: str | None = None) -> list[dict[str, Any]]:
    """Audit heads mirrored as ``audit_head`` tags (``seq:sha256``) on registered models.

    With `log` (a `log_identity`), only the heads of that log: one registry may serve models whose
    moves are audited in different logs (teams, environments), and another log's head says nothing
    about this one. A model tagged before logs were named counts for every log.
    """
    from attestflow.registry import Registry

    anchors = []
    for tags in Registry(tracking_uri).model_tags().values():
        if log is not None and tags.get(AUDIT_LOG_TAG, log) != log:
            continue
        seq, _, digest = tags.get("audit_head", "").partition(":")
        if seq.isdigit() and digest:
            anchors.append({"seq": int(seq), "sha256": digest})
    return anchors
