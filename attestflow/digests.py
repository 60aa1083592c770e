"""Content digests that say how they were made.

A bare hex string does not tell a reader which algorithm produced it or over what; every
digest attestflow records is a `Digest`, so evidence stays checkable years later.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


@dataclass(frozen=True)
class Digest:
    """A digest of some content."""

    algorithm: str
    """Hash algorithm name as hashlib spells it, e.g. ``sha256``."""
    value: str
    """Hex digest."""
    of: str
    """What was hashed, in words: ``file bytes``, ``canonical JSON``, ``manifest``."""

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}"


_buffers = threading.local()


def file_digest(path: Path | str, algorithm: str = "sha256") -> Digest:
    """Hash a file's bytes through this thread's one reusable buffer (flat memory at any size)."""
    return file_digests(path, (algorithm,))[0]


def file_digests(path: Path | str, algorithms: tuple[str, ...]) -> tuple[Digest, ...]:
    """Several digests of a file's bytes from one read pass, in the order of `algorithms`."""
    buf: memoryview | None = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = memoryview(bytearray(CHUNK))
    hashes = [hashlib.new(a) for a in algorithms]
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            chunk = buf[:n]
            for h in hashes:
                h.update(chunk)
    return tuple(Digest(a, h.hexdigest(), "file bytes") for a, h in zip(algorithms, hashes, strict=True))


def bytes_digest(data: bytes, algorithm: str = "sha256") -> Digest:
    """Hash bytes held in memory."""
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest(), "bytes")


def json_digest(obj: Any) -> Digest:
    """SHA-256 of canonical JSON (sorted keys, no whitespace), for configs and records."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return Digest("sha256", hashlib.sha256(text.encode()).hexdigest(), "canonical JSON")
