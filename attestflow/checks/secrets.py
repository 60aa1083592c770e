"""Secrets in tracked files, and in a change: detect-secrets, minus a committed baseline of accepted ones.

detect-secrets (Yelp) finds credentials by pattern (AWS keys, private key blocks, tokens) and by
keyword and entropy. What it finds in this project's documentation and tests are placeholders;
they are accepted one by one in a committed baseline (``.secrets.baseline``, detect-secrets'
own format, so ``detect-secrets audit`` reviews it), keyed by the secret's hash: the same
placeholder elsewhere, or any new value, is a finding again, and a baseline entry audited as a
real secret (``is_secret: true``) never silences one. A finding names the kind of secret and
where it is, never the value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from attestflow.checks.config import SecretsSettings
from attestflow.checks.core import CheckContext, Finding
from attestflow.checks.gitfiles import added_lines, files_in_scope
from attestflow.checks.secrets_cache import Found, SecretsCache, scanner_digest
from attestflow.digests import file_digest
from attestflow.errors import ConfigError

FIX = (
    "remove it from the file and its history and rotate the credential; a false positive: accept it in "
    "the baseline (`detect-secrets scan --baseline .secrets.baseline`, then `detect-secrets audit`)"
)


@dataclass(frozen=True)
class FoundSecret:
    """A secret detect-secrets found: its kind and place, and its hash to match the baseline (never its value)."""

    kind: str
    path: str
    line: int
    secret_hash: str


def find_secrets(
    root: Path, paths: list[str], baseline: dict[str, object] | None = None
) -> list[FoundSecret]:
    """The secrets in the files `paths` (relative to `root`), scanned with the baseline's plugins and filters.

    A file whose bytes, detect-secrets version and settings are those of an earlier scan is not
    scanned again: what was found then comes from the repository's `SecretsCache`.
    """
    from detect_secrets import SecretsCollection
    from detect_secrets.__version__ import VERSION
    from detect_secrets.settings import default_settings, get_settings, transient_settings

    found: list[FoundSecret] = []
    with transient_settings(baseline) if baseline else default_settings():
        cache = SecretsCache(root, scanner_digest(VERSION, get_settings().json()))
        collection = SecretsCollection(root=str(root))
        scanned: dict[str, str] = {}
        for path in paths:
            digest = file_digest(root / path).value
            known = cache.get(path, digest)
            if known is None:
                collection.scan_file(path)  # one process: scan_files forks a pool per core
                scanned[path] = digest
            else:
                found += [FoundSecret(kind, path, line, h) for kind, line, h in known]
        fresh: dict[str, list[Found]] = {path: [] for path in scanned}
        for filename, secret in collection:
            fresh.setdefault(filename, []).append((secret.type, secret.line_number, secret.secret_hash))
    for path, items in fresh.items():
        found += [FoundSecret(kind, path, line, h) for kind, line, h in items]
        if path in scanned and file_digest(root / path).value == scanned[path]:
            cache.put(path, scanned[path], items)  # unchanged while scanned: what was found is its bytes'
    cache.save()
    return sorted(found, key=lambda s: (s.path, s.line, s.kind))


def read_baseline(path: Path) -> dict[str, object] | None:
    """The detect-secrets baseline at `path`, or None where there is none; an unreadable one is bad input."""
    if not path.is_file():
        return None
    try:
        baseline = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a detect-secrets baseline ({type(e).__name__})") from None
    if not isinstance(baseline, dict) or not isinstance(baseline.get("results"), dict):
        raise ConfigError(f"{path}: not a detect-secrets baseline (no results)")
    return baseline


def accepted(baseline: dict[str, object] | None) -> set[tuple[str, str, str]]:
    """(path, type, hash) of every baseline entry not audited as a real secret."""
    results = baseline.get("results") if baseline else None
    if not isinstance(results, dict):
        return set()
    return {
        (path, item["type"], item["hashed_secret"])
        for path, items in results.items()
        for item in items
        if item.get("is_secret") is not True
    }


def run(ctx: CheckContext) -> list[Finding]:
    """A finding for each secret in scope that the baseline does not accept."""
    settings = SecretsSettings.model_validate(ctx.settings)
    baseline = read_baseline(ctx.root / settings.baseline)
    ok = accepted(baseline)
    exclude = [settings.baseline, *settings.exclude]
    paths = [p for p in files_in_scope(ctx.root, ctx.base) if not any(fnmatch(p, g) for g in exclude)]
    findings = []
    changed: dict[str, set[int]] = {}
    for s in find_secrets(ctx.root, paths, baseline):
        if (s.path, s.kind, s.secret_hash) in ok:
            continue
        if ctx.base and s.line not in changed.setdefault(s.path, added_lines(ctx.root, ctx.base, s.path)):
            continue
        findings.append(Finding("secrets", f"{s.kind} in the file", FIX, s.path, s.line))
    return findings
