"""What every check shares: where it looks (`CheckContext`) and what it reports (`Finding`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One thing a check says no to, and what to do about it."""

    check: str
    message: str
    fix: str
    path: str | None = None
    """Relative to the checked repository's root."""
    line: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "path": self.path,
            "line": self.line,
            "message": self.message,
            "fix": self.fix,
        }

    @property
    def location(self) -> str:
        """``path:line``, ``path``, or empty where the finding has no file."""
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}" if self.line is not None else self.path

    def line_text(self) -> str:
        """The finding on one line: check, location, what, and what to do."""
        where = f" {self.location}" if self.path else ""
        return f"{self.check}{where}: {self.message} ({self.fix})"


@dataclass(frozen=True)
class CheckContext:
    """The repository being checked, the change (``base..HEAD``) when a base is given, and the settings."""

    root: Path
    base: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    """The check's own section of the check config (``configs/check.yaml``), already validated."""


@dataclass(frozen=True)
class PreflightRecord:
    """A release's preflight: which checks ran on its repository before any stage, and that they were clean."""

    checks: list[str]
    skipped: list[str]
    """Checks named in ``release:`` that had nothing to check (`note` says why)."""
    clean: bool
    note: str | None = None
    """Why a check, or everything, was not run."""

    template_digests: dict[str, str] = field(default_factory=dict)
    """SHA-256 of each prompt template (and its declaration) under ``templates.folder``, by relative path."""

    def as_json(self) -> dict[str, Any]:
        return {"checks": self.checks, "skipped": self.skipped, "clean": self.clean, "note": self.note}

    def summary(self) -> str:
        """One line for the run's log."""
        if not self.checks:
            return f"nothing checked: {self.note}" if self.note else "no checks"
        skipped = (
            f" (skipped: {', '.join(self.skipped)}{': ' + self.note if self.note else ''})"
            if self.skipped
            else ""
        )
        return f"{', '.join(self.checks)} clean{skipped}"
