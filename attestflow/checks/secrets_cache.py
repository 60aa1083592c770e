"""What detect-secrets found in each file, remembered by the file's content, so an unchanged file is not scanned again.

Scanning every tracked file costs seconds of CPU, and a release's preflight does it each time.
What detect-secrets finds in a file depends only on the file's bytes, its path (some filters
look at the name: lock files, swagger files), detect-secrets' version and its plugin and filter
settings; so the cache key is exactly those, and a changed file, or another version or
setting, is a miss: the cache can skip work, never change a result. A file is remembered only
when its bytes after the scan are still the bytes hashed before it.

One JSON file per detect-secrets version and settings (``secrets-<digest>.json``) in the
repository's ``.attestflow/check-cache/``, a folder that ignores itself in git (the templates
check scans with the default settings, the secrets check with its baseline's; one file each).
A file not used for `STALE_DAYS` is removed. It holds, per file, the type, line and hash of each finding, as detect-secrets'
own baseline does: never a secret's value. A missing, unreadable or malformed cache is an
empty one; it is rewritten atomically. A cache file tracked by git is never used: a commit
could otherwise ship a cache that declares a file holding a secret clean.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from attestflow.checks.gitfiles import git

CACHE_DIR = Path(".attestflow/check-cache")
"""Relative to the repository root."""
FORMAT = 1
STALE_DAYS = 30

log = logging.getLogger(__name__)

Found = tuple[str, int, str]
"""One finding in a file: detect-secrets' type, the line, and the hashed secret."""


def scanner_digest(version: str, settings: dict[str, Any]) -> str:
    """SHA-256 of detect-secrets' version and its settings, with the bytes of any file a setting names.

    Custom plugins (``file://``), a wordlist or a gibberish model are files whose content
    changes what is found; their bytes are part of the digest, not only their names.
    """
    h = hashlib.sha256(json.dumps([version, settings], sort_keys=True, default=str).encode())
    for entry in [*settings.get("plugins_used", []), *settings.get("filters_used", [])]:
        for value in entry.values():
            if isinstance(value, str) and value.startswith(("file://", "/", ".")):
                try:
                    h.update(value.encode() + b"\0" + Path(value.removeprefix("file://")).read_bytes())
                except (OSError, ValueError):
                    continue  # not a file: its name, in the settings, is all there is
    return h.hexdigest()


def _valid_found(items: Any) -> bool:
    """Whether `items` is a list of [type, line, hash] as the cache writes them."""
    return isinstance(items, list) and all(
        isinstance(i, list)
        and len(i) == 3
        and isinstance(i[0], str)
        and type(i[1]) is int
        and isinstance(i[2], str)
        for i in items
    )


def _tracked(root: Path) -> bool:
    """Whether git tracks anything under the repository's ``.attestflow`` folder."""
    return bool(git(root, "ls-files", "-z", "--", CACHE_DIR.parts[0]).strip("\0"))


class SecretsCache:
    """Path -> (SHA-256 of its bytes, what was found) for one detect-secrets version and settings."""

    def __init__(self, root: Path, scanner: str) -> None:
        self.root = root
        self.scanner = scanner
        self.usable = not _tracked(root)
        self.files: dict[str, dict[str, Any]] = self._load() if self.usable else {}
        self.changed = False

    @property
    def path(self) -> Path:
        return self.root / CACHE_DIR / f"secrets-{self.scanner[:16]}.json"

    def _load(self) -> dict[str, dict[str, Any]]:
        """The entries of the cache file for this scanner; none where it is missing, corrupt or for another."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return {}
        if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("scanner") != self.scanner:
            return {}
        files = raw.get("files")
        if not isinstance(files, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) and _valid_found(e.get("found"))
            for e in files.values()
        ):
            return {}
        return files

    def get(self, path: str, sha256: str) -> list[Found] | None:
        """What was found in `path` when its bytes had `sha256`; None when not remembered."""
        entry = self.files.get(path)
        if entry is None or entry["sha256"] != sha256:
            return None
        return [(t, line, h) for t, line, h in entry["found"]]

    def put(self, path: str, sha256: str, found: list[Found]) -> None:
        """Remember what was found in `path` with bytes `sha256`."""
        self.files[path] = {"sha256": sha256, "found": [list(f) for f in found]}
        self.changed = True

    def save(self) -> None:
        """Write the cache atomically, without the files no longer in the work tree; when unchanged, touch it."""
        if not self.usable:
            return
        kept = {p: e for p, e in self.files.items() if (self.root / p).is_file()}
        folder = self.path.parent
        tmp = folder / f"{self.path.name}.{os.getpid()}.tmp"
        try:
            if not self.changed and len(kept) == len(self.files):
                os.utime(self.path)  # in use: not stale
                return
            folder.mkdir(parents=True, exist_ok=True)
            ignore = folder / ".gitignore"
            if not ignore.is_file():
                ignore.write_text("*\n")
            tmp.write_text(
                json.dumps({"format": FORMAT, "scanner": self.scanner, "files": kept}, sort_keys=True)
            )
            tmp.replace(self.path)
            for other in folder.glob("secrets-*.json"):
                if other != self.path and other.stat().st_mtime < time.time() - STALE_DAYS * 86400:
                    other.unlink(missing_ok=True)
        except OSError as e:
            log.info("secrets cache not written (%s): the next run scans again", e)
            tmp.unlink(missing_ok=True)
