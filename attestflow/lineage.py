"""Facts about where a release came from: the code revision and who or what ran it.

`actor` is the one identity of the project: the audit log, the provenance and the registry
tags all name who acted through it, so the same person reads the same everywhere.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

_KIND = re.compile(r"^[a-z][a-z0-9-]*:")
"""An actor that already says its kind: ``user:``, ``policy:``, ``prefect-deployment:``..."""
DATA_PATHS = ("dvc.lock", "*.dvc", "data")
"""Paths that DVC owns: changes there are data, recorded by DVC md5, not code changes."""


@dataclass(frozen=True)
class CodeRevision:
    """The git commit of the code that ran, and whether (and how) the work tree differed from it."""

    commit: str
    """Full commit SHA, or ``unknown`` outside a git work tree."""
    dirty: bool
    changes: str = ""
    """SHA-256 of the uncommitted changes (the diff against the commit and every untracked file); empty when clean."""

    @property
    def version(self) -> str:
        """The commit; with uncommitted changes, the commit plus the start of their digest."""
        return f"{self.commit}+{self.changes[:16]}" if self.dirty else self.commit


def code_revision(path: Path | None = None) -> CodeRevision:
    """The git revision of the work tree containing `path` (default: the current directory).

    Untracked files that git does not ignore count as changes: a new module is code that runs
    (an adapter named by import path) even before it is added.
    """
    cwd = str(path or Path.cwd())

    def git(*args: str) -> bytes | None:
        try:
            out = subprocess.run(  # noqa: S603 - fixed git argv, no shell
                ["git", *args],  # noqa: S607 - the git on PATH, as the developer runs it
                cwd=cwd,
                capture_output=True,
                timeout=30,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout

    head = git("rev-parse", "HEAD")
    commit = head.decode().strip() if head else ""
    if not commit:
        return CodeRevision("unknown", dirty=False)
    # Data is pinned by its DVC digest in the provenance; only code and config count as dirty.
    code = ("--", ".", *(f":!{p}" for p in DATA_PATHS))
    diff = git("diff", "HEAD", "--binary", *code) or b""
    untracked = [
        p for p in (git("ls-files", "-z", "--others", "--exclude-standard", *code) or b"").split(b"\0") if p
    ]
    if not diff and not untracked:
        return CodeRevision(commit, dirty=False)
    h = hashlib.sha256(diff)
    for rel in sorted(untracked):
        file = Path(cwd) / os.fsdecode(rel)
        h.update(b"\0untracked\0" + rel + b"\0")
        h.update(file.read_bytes() if file.is_file() else b"")
    return CodeRevision(commit, dirty=True, changes=h.hexdigest())


@functools.lru_cache(maxsize=8)
def _deployment_name(deployment_id: str) -> str:
    """A deployment's name (one API call per deployment and process)."""
    from prefect.runtime import deployment

    return str(deployment.name)


def _deployment() -> str | None:
    """The Prefect deployment of the flow run in progress, if it was started by one."""
    from prefect.context import FlowRunContext

    run = FlowRunContext.get()
    if run is None or run.flow_run is None or run.flow_run.deployment_id is None:
        return None
    return f"prefect-deployment:{_deployment_name(str(run.flow_run.deployment_id))}"


def actor(name: str | None = None) -> str:
    """Who acts, as ``kind:name``: `name`, else ``ATTESTFLOW_ACTOR``, else a Prefect deployment, else the OS user.

    A bare name is a user's (``alice`` -> ``user:alice``); one that says its kind is kept as it is.
    """
    name = name or os.environ.get("ATTESTFLOW_ACTOR") or _deployment() or getpass.getuser()
    return name if _KIND.match(name) else f"user:{name}"
