"""Code security rules on the project's own Python: ruff's ``S`` rules (flake8-bandit).

ruff reads the repository's own configuration (``per-file-ignores``, inline ``# noqa: S... -
why``), so a justified exception is written once, beside the code, and `make lint` and this
check agree. Tests are excluded by default: asserts and subprocesses are what they are for.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from attestflow.checks.config import CodeSettings
from attestflow.checks.core import CheckContext, Finding
from attestflow.checks.gitfiles import changed_files
from attestflow.errors import BadInputError


def ruff_findings(root: Path, paths: list[str], exclude: list[str]) -> list[dict[str, object]]:
    """ruff's ``S`` diagnostics for `paths` (relative to `root`) as ruff's JSON objects."""
    argv = [sys.executable, "-m", "ruff", "check", "--select", "S", "--output-format", "json", "--exit-zero"]
    argv += ["--no-fix", "--force-exclude", *(f"--extend-exclude={e}" for e in exclude), "--", *paths]
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise BadInputError(f"code: ruff could not run ({reason}); install the dev extra")
    found: list[dict[str, object]] = json.loads(done.stdout or "[]")
    return found


def run(ctx: CheckContext) -> list[Finding]:
    """A finding for each ``S`` rule violation in the configured paths (with a base: in the change's Python)."""
    settings = CodeSettings.model_validate(ctx.settings)
    paths = settings.paths
    if ctx.base:
        prefixes = [p.rstrip("/") for p in paths]
        paths = [
            f
            for f in changed_files(ctx.root, ctx.base)
            if f.endswith(".py") and any(p == "." or f == p or f.startswith(p + "/") for p in prefixes)
        ]
        if not paths:
            return []
    findings = []
    for d in ruff_findings(ctx.root, paths, settings.exclude):
        location = d.get("location")
        line = location.get("row") if isinstance(location, dict) else None
        path = Path(str(d["filename"])).resolve().relative_to(ctx.root.resolve()).as_posix()
        findings.append(
            Finding(
                "code",
                f"{d['code']}: {d['message']}",
                "fix it, or justify it on the line with `# noqa: {code} - why`".format(code=d["code"]),
                path,
                line if isinstance(line, int) else None,
            )
        )
    return findings
