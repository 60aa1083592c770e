"""What the checks read from git: the repository's root, its tracked files, and a change's files and lines.

A check looks at what git would ship: tracked files (untracked and ignored ones, DVC-tracked
data among them, are not part of a change). With a base, the change is ``git diff base...HEAD``:
what the branch added since it left the base, as a pull request shows it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from attestflow.errors import BadInputError

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@", re.MULTILINE)


def run_git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``git <args>`` in `root`, its exit status left to the caller; no git at all is `BadInputError`."""
    try:
        return subprocess.run(  # noqa: S603 - fixed git argv, no shell
            ["git", "-C", str(root), *args],  # noqa: S607 - git from PATH, as a developer runs it
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise BadInputError("git is not installed") from None


def git(root: Path, *args: str) -> str:
    """The output of ``git <args>`` in `root`; a failure is `BadInputError` with git's own first line."""
    done = run_git(root, *args)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[0]
        raise BadInputError(f"git {args[0]} in {root}: {reason}")
    return done.stdout


def repo_root(path: Path) -> Path:
    """The root of the git work tree holding `path`; not a git repository is `BadInputError`."""
    if not path.is_dir():
        raise BadInputError(f"{path}: not a directory")
    try:
        return Path(git(path, "rev-parse", "--show-toplevel").strip())
    except BadInputError:
        raise BadInputError(f"{path}: not a git repository") from None


def resolve_base(root: Path, base: str) -> str:
    """The commit `base` names; an unknown ref is `BadInputError`."""
    try:
        return git(root, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}").strip()
    except BadInputError:
        raise BadInputError(f"--base {base}: not a commit in {root}") from None


def tracked_files(root: Path) -> list[str]:
    """Every file git tracks in `root` that exists in the work tree, relative to the root."""
    names = git(root, "ls-files", "-z").split("\0")
    return [n for n in names if n and (root / n).is_file() and not (root / n).is_symlink()]


def changed_files(root: Path, base: str) -> list[str]:
    """Files added, copied, modified or renamed by ``base...HEAD`` that exist in the work tree."""
    names = git(root, "diff", "--name-only", "-z", "--diff-filter=ACMR", f"{base}...HEAD").split("\0")
    return [n for n in names if n and (root / n).is_file() and not (root / n).is_symlink()]


def files_in_scope(root: Path, base: str | None) -> list[str]:
    """The files a check looks at: the change's with a base, else every tracked file."""
    return changed_files(root, base) if base else tracked_files(root)


def added_lines(root: Path, base: str, path: str) -> set[int]:
    """The line numbers (in HEAD) that ``base...HEAD`` added or changed in `path`."""
    diff = git(root, "diff", "-U0", "--no-color", f"{base}...HEAD", "--", path)
    lines: set[int] = set()
    for m in _HUNK.finditer(diff):
        start, count = int(m.group(1)), int(m.group(2) or "1")
        lines.update(range(start, start + count))
    return lines
