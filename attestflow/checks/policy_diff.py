"""Check ``policy``: a change that loosens a gate policy needs an approval committed with it.

A gate that always passes is the cheapest way to ship a bad model, and it is a one-line diff
(``threshold: 0.80`` to ``0.50``) that reads like housekeeping. So every gate policy file
(``configs/gates*.yaml``) is compared with its version at ``--base``, through the validated
`GatePolicy` on both sides, and each loosening is a finding: a threshold moved to its lenient
side (the side comes from `attestflow.policy`: a metric threshold's direction, and
`LOOSER_WHEN_HIGHER` for the other bounds), a gate taken out of ``run``, a metric dropped,
``format.allowed_domains`` widened, a PII kind no longer scanned, or ``baseline.first_release``
weakened from ``require_approval`` to ``absolute_only``. It stays a finding unless
``configs/policy-approvals/<sha256 of the new file's bytes>.yaml`` (``approved_by``, ``reason``)
is committed: the approval names the exact file it approves, so a later edit needs a new one.
A policy file new in the change has nothing to loosen.

Settings: `PolicySettings` (``policy_glob``, ``approvals``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from attestflow.checks.config import PolicySettings
from attestflow.checks.core import CheckContext, Finding
from attestflow.checks.gitfiles import run_git
from attestflow.config import describe_validation_error
from attestflow.errors import BadInputError, ConfigError
from attestflow.policy import LOOSER_WHEN_HIGHER, GatePolicy, Threshold
from attestflow.yamlfile import AliasRefusedError, parse_yaml, read_yaml

CHECK = "policy"
FIRST_RELEASE_STRICTNESS = {"absolute_only": 0, "require_approval": 1}
"""``baseline.first_release`` from lenient to strict."""


class Approval(BaseModel):
    """Who approved a loosened policy file, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approved_by: str = Field(min_length=1)
    reason: str = Field(min_length=1)


def _policy(text: str, source: str) -> GatePolicy:
    """A gate policy from YAML text; anything invalid is one `ConfigError` line naming `source`."""
    try:
        raw = parse_yaml(text)
    except (AliasRefusedError, yaml.YAMLError):
        raise ConfigError(f"{source}: not a valid gate policy (invalid YAML)") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with 'version', 'run' and one section per gate")
    try:
        return GatePolicy.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(source, e)) from None


def _bound(name: str, old: float | None, new: float | None, looser_when_higher: bool) -> Iterator[str]:
    """A loosening of one numeric bound (None: not set, i.e. not checked)."""
    if old is None:
        return
    if new is None:
        yield f"{name} removed (was {old:g})"
    elif (new > old) if looser_when_higher else (new < old):
        yield f"{name} {'raised' if new > old else 'lowered'} from {old:g} to {new:g}"


def _thresholds(gate: str, old: list[Threshold], new: list[Threshold]) -> Iterator[str]:
    """Loosened or removed metric thresholds of a gate, each metric's lenient side from its direction."""
    now = {t.metric: t for t in new}
    for t in old:
        if t.metric not in now:
            yield f"{gate}: metric {t.metric} removed (was {t.direction} {t.threshold:g})"
            continue
        n = now[t.metric]
        if n.direction != t.direction:
            yield f"{gate}: {t.metric} direction changed from {t.direction} to {n.direction}"
        else:
            yield from _bound(
                f"{gate}: {t.metric} threshold", t.threshold, n.threshold, t.direction == "at_most"
            )


def _gate(gate: str, old: Any, new: Any) -> Iterator[str]:
    """Every loosening of one gate's section."""
    if gate in ("performance", "fairness"):
        yield from _thresholds(gate, old.thresholds, new.thresholds)
        return
    if gate == "format":
        wider = sorted(set(new.allowed_domains) - set(old.allowed_domains))
        if wider:
            yield f"format: allowed_domains widened by {', '.join(repr(d) for d in wider)}"
        return
    if gate == "regression":
        now = {m.metric: m for m in new.metrics}
        for m in old.metrics:
            if m.metric not in now:
                yield f"regression: metric {m.metric} removed (was max_drop {m.max_drop:g})"
            else:
                yield from _bound(
                    f"regression: {m.metric} max_drop",
                    m.max_drop,
                    now[m.metric].max_drop,
                    LOOSER_WHEN_HIGHER["regression.metrics.max_drop"],
                )
    if gate == "resources":
        now_latency = {b.batch_size: b for b in new.latency}
        for b in old.latency:
            n = now_latency.get(b.batch_size)
            if n is None:
                yield f"resources: latency budget at batch size {b.batch_size} removed"
                continue
            for field in ("max_p50_ms", "max_p95_ms"):
                yield from _bound(
                    f"resources: latency {field} at batch size {b.batch_size}",
                    getattr(b, field),
                    getattr(n, field),
                    LOOSER_WHEN_HIGHER[f"resources.latency.{field}"],
                )
    if gate == "licenses":
        yield from (f"licenses: {p!r} no longer denied" for p in sorted(set(old.deny) - set(new.deny)))
        yield from (
            f"licenses: {n} accepted without a licence" for n in sorted(set(new.unknown) - set(old.unknown))
        )
    if gate == "data":
        fewer = sorted(set(old.pii_kinds) - set(new.pii_kinds))
        if fewer:
            yield f"data: PII kind(s) {', '.join(fewer)} no longer scanned"
    for key, looser_when_higher in LOOSER_WHEN_HIGHER.items():
        section, _, field = key.partition(".")
        if section != gate or "." in field:
            continue
        before, after = getattr(old, field), getattr(new, field)
        if isinstance(before, list):
            before, after = max(before), max(after) if after else None
        yield from _bound(f"{gate}: {field}", before, after, looser_when_higher)


def loosenings(old: GatePolicy, new: GatePolicy) -> list[str]:
    """Every way `new` says no less often than `old`, in words naming the gate, metric and both values."""
    found = [f"gate {g} removed from run" for g in old.run if g not in new.run]
    before = FIRST_RELEASE_STRICTNESS[old.baseline.first_release]
    if FIRST_RELEASE_STRICTNESS[new.baseline.first_release] < before:
        found.append(
            f"baseline: first_release weakened from {old.baseline.first_release} to {new.baseline.first_release}"
        )
    for gate in old.run:
        if gate in new.run:
            found += _gate(gate, getattr(old, gate), getattr(new, gate))
    return found


def _approved(ctx: CheckContext, rel: str) -> bool:
    """Whether the approval `rel` is committed (in HEAD); a bad one is bad input."""
    if run_git(ctx.root, "cat-file", "-e", f"HEAD:{rel}").returncode != 0:
        return False
    raw = read_yaml(ctx.root / rel, "policy approval") or {}
    try:
        Approval.model_validate(raw)
    except ValidationError as e:
        raise BadInputError(describe_validation_error(rel, e)) from None
    return True


def note(ctx: CheckContext) -> str | None:
    """What the check did not look at, for the check's result line (not a finding)."""
    return "no --base given: no policy change to compare" if ctx.base is None else None


def run(ctx: CheckContext) -> list[Finding]:
    """A finding for each loosening of a gate policy file since the base, unless its approval is committed."""
    if ctx.base is None:
        return []
    settings = PolicySettings.model_validate(ctx.settings)
    if run_git(ctx.root, "rev-parse", "--verify", "--quiet", f"{ctx.base}^{{commit}}").returncode != 0:
        raise BadInputError(f"--base {ctx.base}: not a commit in {ctx.root}")
    findings = []
    for path in sorted(ctx.root.glob(settings.policy_glob)):
        rel = path.relative_to(ctx.root).as_posix()
        data = path.read_bytes()
        new = _policy(data.decode("utf-8", errors="replace"), rel)
        at_base = run_git(ctx.root, "show", f"{ctx.base}:{rel}")
        if at_base.returncode != 0:
            continue  # new in the change: nothing to loosen
        try:
            old = _policy(at_base.stdout, f"{ctx.base}:{rel}")
        except ConfigError:
            continue  # invalid under today's schema at the base: no comparable rules
        found = loosenings(old, new)
        approval = f"{settings.approvals.rstrip('/')}/{hashlib.sha256(data).hexdigest()}.yaml"
        if not found or _approved(ctx, approval):
            continue
        fix = f"restore the stricter rule, or commit {approval} with approved_by and reason"
        findings += [Finding(CHECK, f"{rel} loosened since {ctx.base}: {what}", fix, rel) for what in found]
    return findings
