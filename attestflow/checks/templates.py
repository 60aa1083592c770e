"""Prompt templates (Jinja) under a configured folder: declared variables, no secrets or PII, a length budget.

A prompt template is code that a model runs: a variable used but never declared is filled with
nothing at render time, a credential or a customer's email pasted into one ships with every
request, and an unbounded one grows the cost of every call. Each template ``<name>.j2`` (or
``.jinja``, ``.jinja2``) has a sidecar ``<name>.yaml`` beside it declaring what it takes::

    variables: [customer_name, question]

The declared variables must equal those the template uses (`jinja2.meta`). Template digests
go into a release's provenance beside the config's, so a verifier knows which prompts shipped.
"""

from __future__ import annotations

import re
from pathlib import Path

from attestflow.checks.config import TemplatesSettings
from attestflow.checks.core import CheckContext, Finding
from attestflow.checks.gitfiles import files_in_scope
from attestflow.checks.secrets import find_secrets
from attestflow.digests import file_digest
from attestflow.errors import BadInputError
from attestflow.yamlfile import read_yaml

SUFFIXES = tuple(TemplatesSettings().suffixes)
PII = {
    "an email address": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
    "a phone number": re.compile(r"(?<![\w.])\+?\d{1,3}?[ .-]?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\w.])"),
}
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def _luhn(digits: str) -> bool:
    """The Luhn checksum that every payment card number passes."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def pii_in(text: str) -> list[tuple[str, int]]:
    """(kind, line) of each email address, phone number and card-like number in `text`; never the value."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        found += [(kind, number) for kind, pattern in PII.items() if pattern.search(line)]
        if any(_luhn(re.sub(r"\D", "", m.group())) for m in _CARD.finditer(line)):
            found.append(("a payment-card-like number", number))
    return found


def used_variables(source: str) -> set[str]:
    """The variables a Jinja template reads from its context."""
    from jinja2 import Environment, meta

    return set(meta.find_undeclared_variables(Environment(autoescape=False).parse(source)))  # noqa: S701 - prompts, not HTML


def sidecar(template: Path) -> Path:
    """Where a template's declaration lives: ``<name>.yaml`` beside it."""
    return template.with_suffix(".yaml")


def declared_variables(template: Path) -> set[str] | None:
    """The variables the template's sidecar declares; None without a sidecar."""
    path = sidecar(template)
    if not path.is_file():
        return None
    raw = read_yaml(path, "template declaration")
    names = raw.get("variables") if isinstance(raw, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadInputError(f"{path}: expected `variables:` as a list of names")
    return set(names)


def templates_in(folder: str, paths: list[str], suffixes: tuple[str, ...] = SUFFIXES) -> list[str]:
    """The template files among `paths` that lie under `folder`."""
    prefix = folder.strip("/") + "/"
    return sorted(p for p in paths if p.startswith(prefix) and p.endswith(suffixes))


def template_digests(folder: Path, suffixes: tuple[str, ...] = SUFFIXES) -> dict[str, str]:
    """SHA-256 of each template under `folder` (and of its sidecar), by path relative to `folder`."""
    if not folder.is_dir():
        return {}
    files = [p for p in folder.rglob("*") if p.is_file() and p.name.endswith(suffixes)]
    files += [sidecar(p) for p in files if sidecar(p).is_file()]
    return {p.relative_to(folder).as_posix(): file_digest(p).value for p in sorted(files)}


def _check_one(ctx: CheckContext, path: str, max_chars: int) -> list[Finding]:
    """The findings of one template: variables, PII and length (secrets are found for all at once)."""
    file = ctx.root / path
    try:
        source = file.read_text()
    except UnicodeDecodeError:
        return [Finding("templates", "not UTF-8 text", "save the template as UTF-8", path)]
    from jinja2 import TemplateSyntaxError

    try:
        used = used_variables(source)
    except TemplateSyntaxError as e:
        return [
            Finding("templates", f"not a valid Jinja template: {e.message}", "fix its syntax", path, e.lineno)
        ]
    findings = []
    declared = declared_variables(file)
    side = sidecar(Path(path)).as_posix()
    if declared is None:
        findings.append(
            Finding(
                "templates", "no declaration of its variables", f"write {side} with `variables: [...]`", path
            )
        )
    elif used != declared:
        parts = [f"used but not declared: {sorted(used - declared)}"] if used - declared else []
        parts += [f"declared but not used: {sorted(declared - used)}"] if declared - used else []
        findings.append(
            Finding("templates", "; ".join(parts), f"make {side} list exactly what it uses", path)
        )
    for kind, line in pii_in(source):
        findings.append(
            Finding(
                "templates", f"{kind} in the template", "take it out; pass it in as a variable", path, line
            )
        )
    if len(source) > max_chars:
        findings.append(
            Finding(
                "templates",
                f"{len(source)} characters, over templates.max_chars ({max_chars})",
                "shorten it, or raise the budget in configs/check.yaml",
                path,
            )
        )
    return findings


def run(ctx: CheckContext) -> list[Finding]:
    """Findings for each template under ``templates.folder`` (with a base: each the change touched)."""
    settings = TemplatesSettings.model_validate(ctx.settings)
    paths = templates_in(settings.folder, files_in_scope(ctx.root, ctx.base), tuple(settings.suffixes))
    if not paths:
        return []
    findings = [f for p in paths for f in _check_one(ctx, p, settings.max_chars)]
    for s in find_secrets(ctx.root, paths):
        findings.append(
            Finding("templates", f"{s.kind} in the template", "take it out and rotate it", s.path, s.line)
        )
    return findings
