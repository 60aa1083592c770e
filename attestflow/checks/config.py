"""The check config (``configs/check.yaml``): which checks run, with which settings, and which a release runs.

One section per check, each with ``enabled`` and the check's own settings, validated strictly
(an unknown key is a typo that would silently turn a check off). A repository without the file
gets the defaults: every check on, and a release's preflight running `RELEASE_DEFAULT`, the
checks that are fast and cannot say no to a clean demo tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from attestflow.errors import ConfigError
from attestflow.yamlfile import read_yaml

CHECK_CONFIG = Path("configs/check.yaml")
"""Where a repository keeps its check config, relative to its root."""

RELEASE_DEFAULT = ["secrets", "model-files", "lock"]
"""The checks a release's preflight runs unless ``release:`` says otherwise."""


class Section(BaseModel):
    """What every check's section has: whether it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True


class SecretsSettings(Section):
    """detect-secrets over tracked files, minus the accepted false positives of a committed baseline."""

    baseline: str = ".secrets.baseline"
    """detect-secrets baseline, relative to the root; its entries audited ``is_secret: true`` still count."""
    exclude: list[str] = Field(default_factory=list)
    """Glob patterns (``fnmatch``) of tracked paths not scanned."""


class ModelFilesSettings(Section):
    """No model, pickle or large binary file in git (DVC tracks those)."""

    max_bytes: int = Field(default=5_000_000, gt=0)
    """A tracked binary file larger than this is a finding."""
    allow: list[str] = Field(default_factory=list)
    """Glob patterns of tracked paths allowed anyway (small shipped fixtures), each a reviewed exception."""


class CodeSettings(Section):
    """ruff's ``S`` (flake8-bandit) rules on the project's own Python."""

    paths: list[str] = Field(default_factory=lambda: ["."])
    exclude: list[str] = Field(default_factory=lambda: ["tests"])
    """Not checked: tests assert and start subprocesses by design."""


class TemplatesSettings(Section):
    """Jinja prompt templates: declared variables, no secrets or PII, a length budget."""

    folder: str = "prompts"
    """Relative to the root; a repository without it has nothing to check."""
    suffixes: list[str] = Field(default_factory=lambda: [".j2", ".jinja", ".jinja2"])
    max_chars: int = Field(default=8000, gt=0)


class AdvisoriesSettings(Section):
    """Known vulnerabilities of the locked and installed packages, from an offline mirror of OSV records."""

    folder: str = "configs/advisories"
    """OSV JSON records, relative to the root; ``attestflow check --update-advisories`` fills it."""
    lock: str = "requirements.lock"
    """The lock whose pins are matched."""
    allow: str = "configs/advisories-allow.yaml"
    """Accepted advisories, each with a reason and an expiry date."""
    installed: bool = True
    """Also match the distributions installed in the running environment."""


class LockSettings(Section):
    """The installed environment equals the lock."""

    lock: str = "requirements.lock"
    """``requirements-gpu.lock`` on a GPU host."""
    ignore: list[str] = Field(default_factory=list)
    """More distribution names left out of the comparison (the installers and the project always are)."""
    extras: list[str] = Field(default_factory=lambda: ["requirements-spark.lock"])
    """Locks of optional extras (relative to the root): what they pin beyond `lock` may be installed, at their pin."""


class CommitsSettings(Section):
    """Every commit of the change signed by an allowed SSH key; HEAD reachable from a protected ref."""

    allowed_signers: str = "configs/allowed_signers"
    """ssh-keygen's allowed-signers file, relative to the root."""
    protected_refs: list[str] = Field(default_factory=list)
    """Refs HEAD must be reachable from; none: not checked."""


class PolicySettings(Section):
    """A loosened gate policy needs a committed approval."""

    policy_glob: str = "configs/gates*.yaml"
    """The gate policy files, relative to the root."""
    approvals: str = "configs/policy-approvals"
    """Folder of ``<sha256 of the policy file>.yaml`` approvals."""


class CheckConfig(BaseModel):
    """The whole check config."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    secrets: SecretsSettings = SecretsSettings()
    model_files: ModelFilesSettings = Field(default=ModelFilesSettings(), alias="model-files")
    code: CodeSettings = CodeSettings()
    templates: TemplatesSettings = TemplatesSettings()
    advisories: AdvisoriesSettings = AdvisoriesSettings()
    lock: LockSettings = LockSettings()
    commits: CommitsSettings = CommitsSettings()
    policy: PolicySettings = PolicySettings()
    release: list[str] = Field(default_factory=lambda: list(RELEASE_DEFAULT))
    """The checks a release's preflight runs, before any stage."""

    @field_validator("release")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n == "release" or n.replace("-", "_") not in cls.model_fields]
        if unknown:
            raise ValueError(f"unknown check(s) {unknown}")
        return names

    def section(self, name: str) -> Section:
        """The section of check `name` (as the CLI spells it: ``model-files``)."""
        section: Section = getattr(self, name.replace("-", "_"))
        return section

    def settings(self, name: str) -> dict[str, Any]:
        """Check `name`'s settings as its `CheckContext` carries them."""
        return self.section(name).model_dump()


def load_check_config(root: Path, path: Path | None = None) -> CheckConfig:
    """The check config at `path` (default: ``<root>/configs/check.yaml``, else the defaults); one line if invalid."""
    from attestflow.config import describe_validation_error

    if path is None:
        path = root / CHECK_CONFIG
        if not path.is_file():
            return CheckConfig()
    raw = read_yaml(path, "check config") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of check sections at the top level")
    try:
        return CheckConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(str(path), e)) from None
