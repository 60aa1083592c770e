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


@dataclass(frozen=True)
class CheckContext:
    """The repository being checked, the change (``base..HEAD``) when a base is given, and the settings."""

    root: Path
    base: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    """The check's own section of the check config (``configs/check.yaml``), already validated."""
