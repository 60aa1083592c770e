"""Facts about where a release came from: the code revision and who or what ran it.

`actor` is the one identity of the project: the audit log, the provenance and the registry
tags all name who acted through it, so the same person reads the same everywhere.
"""

from __future__ import annotations

import functools
import getpass
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
