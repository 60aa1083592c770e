"""Hashing a dataset once for both digests it needs, and remembering the result by file stat.

DVC records md5 and provenance records SHA-256; each file is read once for both, on a thread
pool, and `HashCache` keeps the digests in the workspace keyed by each file's stat, so an
unchanged dataset is re-checked without reading it again.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attestflow.digests import file_digests
from attestflow.workspace import Workspace


def _listing(data_path: Path) -> tuple[list[str], list[str]]:
    """The files of `data_path` (a file or a folder) and their posix paths relative to it, sorted.

    Symlinked files count, symlinked folders do not. Entry types come from the directory
    listing, and paths stay strings: with 10,000 files, pathlib alone costs a second.
    """
    if data_path.is_file():
        return [str(data_path)], [data_path.name]
    root = str(data_path)
    found: list[str] = []
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file():
                    found.append(entry.path)
    rels = sorted(f[len(root) + 1 :].replace(os.sep, "/") for f in found)
    return [os.path.join(root, r) for r in rels], rels


def _hash_many(files: list[str], algorithms: tuple[str, ...], workers: int | None) -> list[tuple[str, ...]]:
    """Hex digests of each file, one read pass per file, on a thread pool.

    hashlib releases the GIL, so this runs at disk speed; each thread reads into one buffer
    it keeps, so memory stays flat at any data size.
    """

    def one(path: str) -> tuple[str, ...]:
        return tuple(d.value for d in file_digests(path, algorithms))

    if len(files) == 1:
        return [one(files[0])]
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) + 2)) as pool:
        return list(pool.map(one, files))


def sha256_manifest(data_path: Path, workers: int | None = None) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `data_path` (or of the file itself)."""
    files, rels = _listing(data_path)
    digests = _hash_many(files, ("sha256",), workers)
    return {rel: d[0] for rel, d in zip(rels, digests, strict=True)}


@dataclass(frozen=True)
class FileHashes:
    """md5 (what DVC records) and SHA-256 (what provenance records) of one file."""

    md5: str
    sha256: str


def _stat_key(path: str) -> list[int]:
    """What says a file is unchanged without reading it: size, mtime and inode as in DVC's state, and ctime.

    ctime cannot be set back from user space, so a rewrite that restores the mtime is still seen.
    """
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class HashCache:
    """The md5 and SHA-256 of every file of one data path, keyed by each file's stat.

    A file whose size, mtime, ctime and inode are those recorded is not read again, so the
    re-check of unchanged data costs one ``stat`` per file. Also remembers the last snapshot
    that was recorded and pushed, so an unchanged one needs no DVC at all. One JSON file per
    data path under the workspace; a missing or unreadable one is an empty cache.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            raw = {}
        self.files: dict[str, list[Any]] = raw.get("files", {})
        self.last: dict[str, Any] = raw.get("snapshot", {})

    @classmethod
    def of(cls, ws: Workspace, data_path: Path) -> HashCache:
        """The cache of `data_path` in the workspace."""
        key = hashlib.sha256(str(data_path).encode()).hexdigest()[:24]
        return cls(ws.hash_cache / f"{key}.json")

    def hash(self, data_path: Path, workers: int | None = None) -> dict[str, FileHashes]:
        """Relative path -> hashes of every file, reading only files whose stat changed."""
        files, rels = _listing(data_path)
        keys = [_stat_key(p) for p in files]
        stale = [
            i for i, (rel, k) in enumerate(zip(rels, keys, strict=True)) if self.files.get(rel, [])[:4] != k
        ]
        for i, digests in zip(
            stale, _hash_many([files[i] for i in stale], ("md5", "sha256"), workers), strict=True
        ):
            self.files[rels[i]] = [*keys[i], *digests]
        if stale or len(self.files) != len(rels):
            self.files = {rel: self.files[rel] for rel in rels}
            self.save()
        return {rel: FileHashes(*self.files[rel][4:6]) for rel in rels}

    def save(self) -> None:
        """Write the cache atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"files": self.files, "snapshot": self.last}))
        tmp.replace(self.path)
