"""The production topology for tests: the stack of `make stack-up`, started through the same module.

One stack per test session, in a folder of its own under the system's temporary directory (as
root, PostgreSQL runs as the ``postgres`` user, which pytest's private ``/tmp/pytest-of-root``
would shut out), stopped and removed at the end.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from attestflow import stack as stack_module


@contextmanager
def stack_workspace() -> Iterator[Path]:
    """A fresh folder that PostgreSQL's user can reach; whatever stack runs there is stopped at the end."""
    workspace = Path(tempfile.mkdtemp(prefix="attestflow-stack-"))
    workspace.chmod(0o755)
    try:
        yield workspace
    finally:
        stack_module.down(workspace)
        shutil.rmtree(workspace, ignore_errors=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[stack_module.Stack]:
    """PostgreSQL, moto's S3 server, Prefect and MLflow servers on it; `stack.env` is what clients export."""
    with stack_workspace() as workspace:
        started, _ = stack_module.up(workspace)
        yield started
