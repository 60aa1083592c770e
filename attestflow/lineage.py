"""Facts about where a release came from: the code revision and who or what ran it."""

from __future__ import annotations

import getpass
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

DATA_PATHS = ("dvc.lock", "*.dvc", "data")
"""Paths that DVC owns: changes there are data, recorded by DVC md5, not code changes."""


@dataclass(frozen=True)
class CodeRevision:
    """The git commit of the code that ran, and whether the work tree had changes."""

    commit: str
    """Full commit SHA, or ``unknown`` outside a git work tree."""
    dirty: bool


def code_revision(path: Path | None = None) -> CodeRevision:
    """The git revision of the work tree containing `path` (default: the current directory)."""
    cwd = str(path or Path.cwd())

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if not commit:
        return CodeRevision("unknown", dirty=False)
    # Data is pinned by its DVC digest in the provenance; only code and config count as dirty.
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", *(f":!{p}" for p in DATA_PATHS))
    return CodeRevision(commit, dirty=bool(status))


def triggered_by() -> str:
    """Who or what started this run: a Prefect deployment, else the local user."""
    from prefect.runtime import deployment

    if deployment.id:
        return f"prefect-deployment:{deployment.name}"
    return f"user:{os.environ.get('ATTESTFLOW_ACTOR') or getpass.getuser()}"
