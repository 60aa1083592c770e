"""Check ``advisories``: known vulnerabilities of the locked and installed packages, from an offline mirror.

pip-audit cannot run without a network, and an air-gapped CI has none; so the advisories are
OSV-format JSON records in a folder of the repository (``settings["folder"]``), filled where a
network exists by `update` (``attestflow check --update-advisories``) and reviewed like code.
Every ``name==version`` pin of the lock and every installed distribution is matched against
them with OSV's own semantics (`affects`). An advisory a team has judged harmless goes in the
allow-list with a reason and an expiry date, so that the judgement is seen again.

Settings: `AdvisoriesSettings` (``folder``, ``lock``, ``allow``, ``installed``).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from attestflow.checks.config import AdvisoriesSettings
from attestflow.checks.core import CheckContext, Finding
from attestflow.checks.lockfile import installed, normalize, parse_lock
from attestflow.config import describe_validation_error
from attestflow.errors import BadInputError, UnavailableError
from attestflow.yamlfile import read_yaml

CHECK = "advisories"
OSV_API = "https://api.osv.dev/v1"
ECOSYSTEM = "PyPI"
RANGE_TYPES = ("ECOSYSTEM", "SEMVER")
"""OSV range types whose events are package versions (``GIT`` ranges name commits)."""
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
BATCH = 1000
"""Most queries OSV's querybatch takes in one request."""


class AllowEntry(BaseModel):
    """One accepted advisory: which, for which package, why, and until when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    package: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    expires: date


class AllowList(BaseModel):
    """The allow-list file: ``allow:`` a list of entries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[AllowEntry] = []


def load_allow_list(path: Path) -> list[AllowEntry]:
    """The allow-list entries in `path` (none when it does not exist); an entry without reason or expiry is bad input."""
    if not path.is_file():
        return []
    raw = read_yaml(path, "advisory allow-list") or {}
    try:
        return list(AllowList.model_validate(raw).allow)
    except ValidationError as e:
        raise BadInputError(describe_validation_error(str(path), e)) from None


def _version(text: str, where: str) -> Version:
    """`text` as a PEP 440 version; an advisory that names something else is bad input."""
    try:
        return Version(text)
    except InvalidVersion:
        raise BadInputError(f"{where}: {text!r} is not a PEP 440 version") from None


def _in_range(version: Version, events: list[dict[str, str]], where: str) -> bool:
    """OSV's range evaluation: walk the events in version order; introduced opens, fixed/last_affected close."""
    keyed = []
    for event in events:
        for kind in ("introduced", "fixed", "last_affected"):
            if kind in event:
                keyed.append((_version(event[kind], where), kind))
    affected = False
    for at, kind in sorted(keyed, key=lambda e: e[0]):
        if kind == "introduced" and version >= at:
            affected = True
        elif (kind == "fixed" and version >= at) or (kind == "last_affected" and version > at):
            affected = False
    return affected


def _entries(record: dict[str, Any], package: str) -> list[dict[str, Any]]:
    """The ``affected`` entries of an OSV record for a PyPI `package` (normalised name)."""
    return [
        a
        for a in record.get("affected") or []
        if (a.get("package") or {}).get("ecosystem") == ECOSYSTEM
        and normalize(str((a.get("package") or {}).get("name", ""))) == package
    ]


def affects(record: dict[str, Any], package: str, version: str, where: str = "advisory") -> bool:
    """Whether the OSV `record` says `package` (normalised) at `version` is affected."""
    if record.get("withdrawn"):
        return False
    v = _version(version, where)
    for entry in _entries(record, package):
        listed = entry.get("versions") or []
        if any(str(x) == version or _same(str(x), v) for x in listed):
            return True
        for r in entry.get("ranges") or []:
            if r.get("type") in RANGE_TYPES and _in_range(v, r.get("events") or [], where):
                return True
    return False


def _same(text: str, version: Version) -> bool:
    """Whether `text` is `version` in another spelling (``1.0`` and ``1.0.0``)."""
    try:
        return Version(text) == version
    except InvalidVersion:
        return False


def fixed_in(record: dict[str, Any], package: str, version: str) -> str | None:
    """The lowest version above `version` that the record names as fixed for `package`, if any."""
    v = Version(version)
    fixes = [
        _version(e["fixed"], "advisory")
        for entry in _entries(record, package)
        for r in entry.get("ranges") or []
        if r.get("type") in RANGE_TYPES
        for e in r.get("events") or []
        if "fixed" in e
    ]
    later = sorted(f for f in fixes if f > v)
    return str(later[0]) if later else None


def load_records(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every OSV record (``*.json``) in `folder`, with its file; an unreadable record is bad input."""
    if not folder.is_dir():
        raise BadInputError(f"advisory folder not found: {folder}")
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise BadInputError(f"{path}: not an OSV JSON record ({type(e).__name__})") from None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise BadInputError(f"{path}: not an OSV record (no 'id')")
        records.append((path, record))
    return records


@dataclass(frozen=True)
class _Target:
    """A package version to look up, and where it came from."""

    package: str
    version: str
    path: str | None
    line: int | None


def _targets(ctx: CheckContext, lock: Path, with_installed: bool) -> list[_Target]:
    """The lock's pins, then the installed distributions the lock does not already name at that version."""
    rel = lock.relative_to(ctx.root).as_posix() if lock.is_relative_to(ctx.root) else str(lock)
    targets = [_Target(p.name, p.version, rel, p.line) for p in parse_lock(lock).values()]
    if with_installed:
        seen = {(t.package, t.version) for t in targets}
        targets += [
            _Target(d.name, d.version, None, None)
            for d in installed().values()
            if (d.name, d.version) not in seen and not d.editable
        ]
    return targets


def _ids(record: dict[str, Any]) -> set[str]:
    """An advisory's id and its aliases (a CVE allowed by its GHSA id is allowed)."""
    return {record["id"], *map(str, record.get("aliases") or [])}


def run(ctx: CheckContext) -> list[Finding]:
    """Findings for every locked or installed package version an advisory of the mirror affects."""
    settings = AdvisoriesSettings.model_validate(ctx.settings)
    folder = ctx.root / settings.folder
    lock = ctx.root / settings.lock
    allow_path = ctx.root / settings.allow
    allow = load_allow_list(allow_path)
    today = date.today()
    used: set[AllowEntry] = set()
    findings = []
    by_package: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for path, record in load_records(folder):
        for name in {
            normalize(str((a.get("package") or {}).get("name", ""))) for a in record.get("affected") or []
        }:
            by_package.setdefault(name, []).append((path, record))
    for target in _targets(ctx, lock, settings.installed):
        for path, record in by_package.get(target.package, []):
            if not affects(record, target.package, target.version, str(path)):
                continue
            ids = _ids(record)
            entry = next((a for a in allow if a.id in ids and normalize(a.package) == target.package), None)
            if entry is not None:
                used.add(entry)
                if entry.expires >= today:
                    continue
            fixed = fixed_in(record, target.package, target.version)
            where = "installed" if target.path is None else "locked"
            expired = f"; its allow-list entry expired on {entry.expires}" if entry else ""
            findings.append(
                Finding(
                    CHECK,
                    f"{record['id']}: {target.package} {target.version} ({where}) is affected"
                    + (f", fixed in {fixed}" if fixed else ", no fixed version yet")
                    + expired,
                    f"upgrade {target.package} to {fixed} in pyproject.toml and run `make lock`"
                    if fixed
                    else f"remove {target.package}, or allow {record['id']} in {allow_path.name} "
                    "with a reason and an expiry date",
                    target.path,
                    target.line,
                )
            )
    allow_rel = allow_path.relative_to(ctx.root).as_posix() if allow_path.is_relative_to(ctx.root) else None
    for entry in allow:
        if entry not in used and entry.expires < today:
            findings.append(
                Finding(
                    CHECK,
                    f"allow-list entry {entry.id} for {entry.package} expired on {entry.expires}",
                    "remove the entry, or review the advisory again and set a new expiry date",
                    allow_rel,
                )
            )
    return findings


def _request(url: str, body: dict[str, Any] | None = None) -> Any:
    """JSON from OSV's API (POST when there is a body); any network or HTTP failure is `UnavailableError`."""
    if not url.startswith(("https://", "http://")):
        raise BadInputError(f"OSV API URL must be http(s): {url}")
    data = json.dumps(body).encode() if body is not None else None
    # S310: the scheme is checked above, so no file: or custom-scheme URL is opened.
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
            return json.loads(resp.read())
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as e:
        raise UnavailableError(f"OSV API {url} could not be reached: {e}") from None


def update(folder: Path, lock_path: Path, api: str = OSV_API) -> int:
    """Fetch every OSV record affecting a pin of `lock_path` into `folder` as ``<id>.json``; the number written."""
    pins = list(parse_lock(lock_path).values())
    ids: set[str] = set()
    for start in range(0, len(pins), BATCH):
        queries = [
            {"package": {"name": p.name, "ecosystem": ECOSYSTEM}, "version": p.version}
            for p in pins[start : start + BATCH]
        ]
        while queries:
            results = _request(f"{api}/querybatch", {"queries": queries}).get("results") or []
            again = []
            for query, result in zip(queries, results, strict=False):
                ids.update(str(v["id"]) for v in result.get("vulns") or [] if v.get("id"))
                if result.get("next_page_token"):
                    again.append({**query, "page_token": result["next_page_token"]})
            queries = again
    folder.mkdir(parents=True, exist_ok=True)
    for vuln_id in sorted(ids):
        if not _ID.match(vuln_id):
            raise UnavailableError(f"OSV API returned an unexpected advisory id {vuln_id[:40]!r}")
        record = _request(f"{api}/vulns/{vuln_id}")
        (folder / f"{vuln_id}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return len(ids)
