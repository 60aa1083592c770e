"""The dependency lock and the installed environment, as the dependency checks read them.

Two checks compare pins with something (the advisory mirror, the installed distributions), so
the lock is parsed here once: a pip requirements file of ``name==version`` pins with
``--hash`` options, as ``uv pip compile --generate-hashes`` writes it. Names are compared
in their PEP 503 normal form (``Foo_Bar`` and ``foo-bar`` are one project).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import InvalidMarker, Marker

from attestflow.errors import BadInputError

_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?:\[[^\]]*\])?"
    r"\s*===?\s*(?P<version>[^\s;\\]+)\s*(?:;(?P<marker>[^\\]*?))?\s*(?P<options>(?:--\S+\s*)*)$"
)


def normalize(name: str) -> str:
    """A project name in its PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    """One ``name==version`` line of the lock, with its hashes and the line it starts on."""

    name: str
    """PEP 503 normal form."""
    version: str
    hashes: frozenset[str]
    """``algorithm:hex`` strings, as pip's ``--hash`` spells them."""
    line: int
    marker: str | None = None

    def applies(self) -> bool:
        """Whether this pin's environment marker (if any) holds for the running interpreter."""
        return self.marker is None or Marker(self.marker).evaluate()


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Each requirement of a requirements file with its continuation lines joined, and its first line number."""
    start = 0
    parts: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        joined = " ".join(p.strip() for p in parts).strip()
        parts = []
        if joined:
            yield start, joined
    if parts and (joined := " ".join(p.strip() for p in parts).strip()):
        yield start, joined


def parse_lock(path: Path) -> dict[str, Pin]:
    """Every pin of the lock file `path` by normalised name; anything but an exact pin is bad input."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"lock file {path} cannot be read: {e}") from None
    pins: dict[str, Pin] = {}
    for number, line in _logical_lines(text):
        if line.startswith("-"):  # --index-url, --find-links and other pip options
            continue
        m = _PIN.match(line)
        if m is None:
            raise BadInputError(f"{path}:{number}: not an exact 'name==version' pin: {line[:80]}")
        marker = (m["marker"] or "").strip() or None
        if marker is not None:
            try:
                Marker(marker)
            except InvalidMarker:
                raise BadInputError(f"{path}:{number}: invalid environment marker: {marker}") from None
        hashes = frozenset(o.removeprefix("--hash=") for o in m["options"].split() if o.startswith("--hash="))
        name = normalize(m["name"])
        pins[name] = Pin(name, m["version"], hashes, number, marker)
    return pins


@dataclass(frozen=True)
class Installed:
    """One installed distribution, and the archive hashes pip recorded for it (URL installs only)."""

    name: str
    """PEP 503 normal form."""
    version: str
    hashes: frozenset[str]
    editable: bool = False


def _recorded(dist: md.Distribution) -> tuple[frozenset[str], bool]:
    """The archive hashes and the editable flag in a distribution's ``direct_url.json`` (PEP 610)."""
    try:
        raw = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return frozenset(), False
    archive = raw.get("archive_info") or {}
    hashes = {f"{a}:{v}" for a, v in (archive.get("hashes") or {}).items()}
    if isinstance(archive.get("hash"), str):
        hashes.add(archive["hash"].replace("=", ":", 1))
    return frozenset(hashes), bool((raw.get("dir_info") or {}).get("editable"))


def installed() -> dict[str, Installed]:
    """Every distribution the running interpreter can import, by normalised name (the first on the path wins)."""
    found: dict[str, Installed] = {}
    for dist in md.distributions():
        raw_name = dist.metadata["Name"]
        if not raw_name:
            continue
        name = normalize(raw_name)
        if name not in found:
            hashes, editable = _recorded(dist)
            found[name] = Installed(name, dist.version, hashes, editable)
    return found
