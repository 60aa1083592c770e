"""Which checks exist, and running them: for `attestflow check` and for a release's preflight.

Each check module is imported only when it runs (detect-secrets, Jinja and ruff stay unloaded
for the others).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from attestflow.checks.config import CheckConfig, load_check_config
from attestflow.checks.core import CheckContext, Finding, PreflightRecord
from attestflow.checks.gitfiles import repo_root, resolve_base
from attestflow.errors import BadInputError, GateFailedError

CHECKS = {
    "secrets": "attestflow.checks.secrets:run",
    "model-files": "attestflow.checks.model_files:run",
    "code": "attestflow.checks.code_rules:run",
    "templates": "attestflow.checks.templates:run",
    "advisories": "attestflow.checks.advisories:run",
    "lock": "attestflow.checks.lockenv:run",
    "commits": "attestflow.checks.commits:run",
    "policy": "attestflow.checks.policy_diff:run",
}
"""Check name -> ``module:function`` that runs it."""


@dataclass(frozen=True)
class CheckRun:
    """What one invocation of the checks did."""

    ran: list[str]
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)
    """``check: what it did not look at`` (a check's optional ``note(ctx)``), e.g. no commits without a base."""


RunFunction = Callable[[CheckContext], list[Finding]]
NoteFunction = Callable[[CheckContext], str | None]


def _check_functions(name: str) -> tuple[RunFunction, NoteFunction | None]:
    """The `run` of check `name` and its `note`, if it has one."""
    module_name, _, attr = CHECKS[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr), getattr(module, "note", None)


def selected(config: CheckConfig, only: list[str] | None) -> list[str]:
    """The checks to run: `only` (each must exist), else every enabled one, in `CHECKS` order."""
    if only:
        unknown = [n for n in only if n not in CHECKS]
        if unknown:
            raise BadInputError(f"--only: unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}")
        return [n for n in CHECKS if n in only]
    return [n for n in CHECKS if config.section(n).enabled]


def run_named(root: Path, base: str | None, config: CheckConfig, names: list[str]) -> CheckRun:
    """Run the checks `names` on the git work tree at `root` (the change ``base...HEAD`` with a base)."""
    root = repo_root(root)
    if base is not None:
        resolve_base(root, base)
    ran, findings, notes = [], [], []
    for name in names:
        run, note = _check_functions(name)
        ctx = CheckContext(root, base, config.settings(name))
        findings += run(ctx)
        ran.append(name)
        said = note(ctx) if note is not None else None
        if said:
            notes.append(f"{name}: {said}")
    return CheckRun(ran, findings, notes)


def run_checks(
    root: Path, base: str | None, config: CheckConfig, only: list[str] | None = None
) -> list[Finding]:
    """The findings of the selected checks (`only`, else every enabled one) on the repository at `root`."""
    return run_named(root, base, config, selected(config, only)).findings


def refresh_advisories(root: Path, config: CheckConfig) -> int:
    """Fetch the OSV advisories of every lock pin into the configured folder; how many records were written."""
    from attestflow.checks.advisories import update

    written: int = update(root / config.advisories.folder, root / config.advisories.lock)
    return written


def release_preflight(repo: Path, code_root: Path) -> PreflightRecord:
    """Run the checks ``release:`` names on the git work tree holding `repo`; any finding refuses the release.

    A repository outside git has no tracked files to check: recorded as such, not refused.
    The ``lock`` check compares the environment with the lock of the code that runs the release
    (`code_root`, the lock its provenance names); without one there, it is skipped and says so.
    The record also carries the digests of the repository's prompt templates, for the provenance.
    """
    from attestflow.checks.lockenv import code_lock
    from attestflow.checks.templates import template_digests

    try:
        root = repo_root(repo)
    except BadInputError:
        return PreflightRecord(checks=[], skipped=[], clean=True, note=f"{repo} is not in a git repository")
    config = load_check_config(root)
    names, note = list(config.release), None
    if "lock" in names:
        lock = code_lock(code_root)
        if lock is None:
            names.remove("lock")
            note = f"no lock beside the code at {code_root}: the environment was not compared with one"
        else:
            extras = [str(code_root / e) for e in load_check_config(code_root).lock.extras]
            locked = config.lock.model_copy(update={"lock": str(lock), "extras": extras})
            config = config.model_copy(update={"lock": locked})
    done = run_named(root, None, config, names)
    if done.findings:
        raise GateFailedError([f"preflight: {f.line_text()}" for f in done.findings])
    templates = template_digests(root / config.templates.folder, tuple(config.templates.suffixes))
    skipped = [] if note is None else ["lock"]
    return PreflightRecord(
        checks=done.ran, skipped=skipped, clean=True, note=note, template_digests=templates
    )
