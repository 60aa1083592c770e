"""Gate `licenses`: no dependency of the release under a denied licence, and none without a licence unreviewed.

What a third party inherits with a model includes the licences of everything that went into
it. The gate reads them from the judged bundle's AI bill of materials (`attestflow.aibom`:
the declared licence of each package, libraries and a packaged base model such as MiniLM; a
checkpoint file declares none and is recorded by digest only); judging a bare ONNX file, it reads the
installed environment the same way. Each licence is an SPDX expression or a free-text name:
``A OR B`` passes when one alternative is not denied, ``A AND B`` only when neither is, and
``A WITH exception`` is judged as ``A`` (`denied_in`). A package with no declared licence fails
unless the policy's ``unknown`` lists it as reviewed. Both decisions name the packages.
"""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase

from attestflow.aibom import declared_licence
from attestflow.aibom_check import licences, read_bom
from attestflow.checks.lockfile import normalize
from attestflow.policy import GatePolicy, LicensesPolicy
from attestflow.records import GateDecision
from tasks.gates.decisions import bound, cannot_run, judge
from tasks.gates.evaluation import Evaluation

GATE = "licenses"
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_OPERATORS = {"AND", "OR", "WITH"}


def _denied(leaf: str, deny: list[str]) -> bool:
    return any(fnmatchcase(leaf.lower(), pattern.lower()) for pattern in deny)


def denied_in(expression: str, deny: list[str]) -> list[str]:
    """The denied licences that `expression` cannot do without; empty when it is allowed."""
    tokens = _TOKEN.findall(expression)
    if not any(t.upper() in _OPERATORS or t in "()" for t in tokens):
        return [expression] if _denied(expression, deny) else []
    pos = 0

    def leaf() -> list[str]:
        nonlocal pos
        if pos < len(tokens) and tokens[pos] == "(":
            pos += 1
            found = either()
            pos += 1  # the closing parenthesis
            return found
        words = []
        while pos < len(tokens) and tokens[pos].upper() not in _OPERATORS and tokens[pos] not in "()":
            words.append(tokens[pos])
            pos += 1
        if pos < len(tokens) and tokens[pos].upper() == "WITH":
            pos += 2  # the exception does not change which licence it is
        name = " ".join(words)
        return [name] if name and _denied(name, deny) else []

    def both() -> list[str]:
        nonlocal pos
        found = leaf()
        while pos < len(tokens) and tokens[pos].upper() == "AND":
            pos += 1
            found += leaf()
        return found

    def either() -> list[str]:
        nonlocal pos
        options = [both()]
        while pos < len(tokens) and tokens[pos].upper() == "OR":
            pos += 1
            options.append(both())
        return [] if any(not o for o in options) else [d for o in options for d in o]

    return either()


def _environment_licences() -> dict[str, str | None]:
    import importlib.metadata as md

    return {f"{d.metadata['Name']}=={d.version}": declared_licence(d) for d in md.distributions()}


def _named(packages: list[str]) -> str:
    return ", ".join(packages[:5]) + (f" and {len(packages) - 5} more" if len(packages) > 5 else "")


def judge_licences(
    found: dict[str, str | None], rules: LicensesPolicy, digest: str, source: str
) -> list[GateDecision]:
    """The two decisions on `found` (``name==version`` -> licence): denied licences, and unreviewed unknowns."""
    reviewed = {normalize(n) for n in rules.unknown}
    denied = [
        f"{package} ({', '.join(why)})"
        for package, licence in sorted(found.items())
        if licence and (why := denied_in(licence, rules.deny))
    ]
    unknown = sorted(
        p for p, licence in found.items() if licence is None and normalize(p.split("==")[0]) not in reviewed
    )
    return [
        judge(
            GATE,
            bound("denied_licences", 0, "at_most"),
            len(denied),
            digest,
            note=f"{source}: {_named(denied)}" if denied else f"{len(found)} packages of {source}",
        ),
        judge(
            GATE,
            bound("unknown_licences", 0, "at_most"),
            len(unknown),
            digest,
            note=f"no licence declared and not in licenses.unknown: {_named(unknown)}"
            if unknown
            else f"{len(reviewed)} reviewed in licenses.unknown",
        ),
    ]


def gate(ev: Evaluation, policy: GatePolicy) -> list[GateDecision]:
    """Denied and unknown licences of the BOM's components (or, for a bare ONNX file, of the environment)."""
    rules = policy.licenses
    if rules is None:
        return []
    digest = str(policy.digest())
    if ev.bom is None:
        return judge_licences(_environment_licences(), rules, digest, "the installed environment")
    try:
        found = licences(read_bom(ev.bom))
    except (OSError, ValueError, json.JSONDecodeError) as e:
        why = f"the AI bill of materials cannot be read: {e}"
        return [
            cannot_run(GATE, bound(m, 0, "at_most"), why, digest)
            for m in ("denied_licences", "unknown_licences")
        ]
    return judge_licences(found, rules, digest, "the AI bill of materials")
