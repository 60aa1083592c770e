"""Throwaway git repositories for the `attestflow check` tests, and secrets planted at run time.

The planted values are made when a test runs, so that no credential-shaped string is in this
repository's own files (which `attestflow check` scans too).
"""

from __future__ import annotations

import secrets
import string
import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def make_repo(
    root: Path, files: Mapping[str, str | bytes], check_config: dict[str, object] | None = None
) -> Path:
    """A git repository at `root` with `files` (and ``configs/check.yaml`` from `check_config`) committed."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.invalid")
    git(root, "config", "user.name", "dev")
    git(root, "config", "commit.gpgsign", "false")
    if check_config is not None:
        files = {**files, "configs/check.yaml": yaml.safe_dump(check_config)}
    commit(root, files or {"README.md": "a clean repository\n"}, "first")
    return root


def commit(root: Path, files: Mapping[str, str | bytes], message: str) -> str:
    """Write and commit `files`; the new commit's id."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    git(root, "add", "--", *files)
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD").strip()


def aws_key() -> str:
    """A fresh AWS-access-key-shaped id (not a real one)."""
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def private_key_block() -> tuple[str, str]:
    """A PEM private key block and its (random) body."""
    body = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(64))
    dashes, kind = "-" * 5, " ".join(["PRIVATE", "KEY"])
    return f"{dashes}BEGIN {kind}{dashes}\n{body}\n{dashes}END {kind}{dashes}\n", body
