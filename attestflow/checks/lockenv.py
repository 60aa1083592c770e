"""Check ``lock``: the installed environment is the locked one, and a digest that says which environment ran.

The provenance names the lock file, but a lock proves nothing about a host where someone ran a
bare ``pip install``: a model trained there was trained by unlocked code. So every installed
distribution must be pinned by the lock at the installed version (nothing missing, nothing
extra), and where pip recorded the archive's hash (``direct_url.json``, PEP 610) that hash must
be one the lock allows. The installers themselves (pip, setuptools, wheel) and the project's
own editable install are not part of the comparison. `environment_digest` is what the
provenance records beside the lock's digest.

Settings: `LockSettings` (``lock``: ``requirements-gpu.lock`` on a GPU host; ``ignore``).
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

from packaging.version import InvalidVersion, Version

from attestflow.checks.config import LockSettings
from attestflow.checks.core import CheckContext, Finding
from attestflow.checks.lockfile import Installed, Pin, installed, normalize, parse_lock
from attestflow.digests import Digest

CHECK = "lock"
INSTALLERS = frozenset({"pip", "setuptools", "wheel"})
"""Installed to install the rest; not pinned by the lock."""
ENVIRONMENT_DEPENDENCY = "python-environment"
"""The provenance's resolved dependency that carries `environment_digest`, beside ``requirements.lock``."""
REINSTALL = "pip install --require-hashes --no-deps -r {lock} (`make install` on a fresh venv)"


def environment_digest() -> Digest:
    """SHA-256 over the sorted ``name==version`` lines of the installed environment, with pip-recorded hashes."""
    lines = sorted(
        f"{d.name}=={d.version}" + "".join(f" --hash={h}" for h in sorted(d.hashes))
        for d in installed().values()
    )
    text = "".join(f"{line}\n" for line in lines)
    return Digest(
        "sha256", hashlib.sha256(text.encode()).hexdigest(), "installed distributions (name==version lines)"
    )


def _project_name(root: Path) -> str | None:
    """The ``[project] name`` of the checked repository's pyproject.toml, if it has one."""
    try:
        name = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return normalize(str(name))


def _same_version(a: str, b: str) -> bool:
    """Whether two version strings name one version (``1.0`` is ``1.0.0``)."""
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _differs(name: str, pin: Pin, have: Installed, lock: str, fix: str) -> Finding | None:
    """Why the installed `have` is not the pinned `pin` (version, then archive hash); None when it is."""
    if not _same_version(have.version, pin.version):
        return Finding(
            CHECK, f"{name} {have.version} is installed but the lock pins {pin.version}", fix, lock, pin.line
        )
    if have.hashes and not have.hashes & pin.hashes:
        return Finding(
            CHECK,
            f"{name} {have.version} was installed from an archive whose hash the lock does not list",
            fix,
            lock,
            pin.line,
        )
    return None


def compare(
    pins: dict[str, Pin],
    env: dict[str, Installed],
    lock: str,
    ignore: set[str],
    optional: dict[str, tuple[Pin, str]] | None = None,
) -> list[Finding]:
    """Every way the environment `env` differs from the lock's `pins` (the lock file named `lock`).

    `optional` holds what the locks of optional extras pin beyond `pins` (each with its lock's
    name): installed, it must be at that pin; absent, it is not missed.
    """
    fix = REINSTALL.format(lock=lock)
    findings = []
    for name, pin in sorted(pins.items()):
        if name in ignore or not pin.applies():
            continue
        have = env.get(name)
        if have is None:
            findings.append(
                Finding(CHECK, f"{name}=={pin.version} is locked but not installed", fix, lock, pin.line)
            )
            continue
        differs = _differs(name, pin, have, lock, fix)
        if differs:
            findings.append(differs)
    for name, have in sorted(env.items()):
        if name in pins or name in ignore:
            continue
        if optional and name in optional:
            extra_pin, extra_lock = optional[name]
            differs = _differs(name, extra_pin, have, extra_lock, REINSTALL.format(lock=extra_lock))
            if differs:
                findings.append(differs)
            continue
        findings.append(
            Finding(
                CHECK,
                f"{name} {have.version} is installed but not in the lock",
                f"pip uninstall {name}, or add it to pyproject.toml and run `make lock`",
                lock,
            )
        )
    return findings


def code_lock(code_root: Path) -> Path | None:
    """The lock the code at `code_root` was installed from (its check config's ``lock.lock``), if it is there.

    What a release's preflight compares the environment with, and what its provenance names.
    """
    from attestflow.checks.config import load_check_config

    lock = code_root / load_check_config(code_root).lock.lock
    return lock if lock.is_file() else None


def run(ctx: CheckContext) -> list[Finding]:
    """Findings for every installed distribution that differs from the lock: missing, extra, version, hash."""
    settings = LockSettings.model_validate(ctx.settings)
    lock = ctx.root / settings.lock
    rel = lock.relative_to(ctx.root).as_posix() if lock.is_relative_to(ctx.root) else str(lock)
    if not lock.is_file():
        return [
            Finding(
                CHECK,
                f"no lock file {rel}: nothing shows that this environment is the one a lock describes",
                "make a hash-locked requirements file (`uv pip compile --generate-hashes`, `make lock` here) "
                "and name it in configs/check.yaml lock.lock, or set lock.enabled: false",
                path=rel,
            )
        ]
    ignore = set(INSTALLERS) | {normalize(n) for n in settings.ignore}
    # The project the lock belongs to is installed from its own tree, not from the lock.
    ignore |= {name for name in (_project_name(ctx.root), _project_name(lock.parent)) if name}
    pins = parse_lock(lock)
    optional: dict[str, tuple[Pin, str]] = {}
    for extra in settings.extras:
        if (ctx.root / extra).is_file():
            for name, pin in parse_lock(ctx.root / extra).items():
                if name not in pins and pin.applies():
                    optional.setdefault(name, (pin, extra))
    return compare(pins, installed(), rel, ignore, optional)
