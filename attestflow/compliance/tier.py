"""The risk tier's refusal: a release whose tier requires a control its config cannot meet stops before training.

With ``compliance.risk_tier: high``, every control a mapping in ``compliance.mappings`` marks
``required_when: [high]`` must be one the release can meet: the gates it asks for in the
policy's ``run:``, a person's approval (``approve.mode: human``), the model card sections
written, ``data.sensitive`` set, the snapshot pushed where it can be re-checked, attributions
made. What a release always produces (signature, provenance, metrics, ...) needs nothing.

The refusal is a `GateFailedError` (exit 1), not bad input (exit 2): the config and policy
are well-formed and valid; it is a rule, the tier, that says no to them, as a gate does to a
model, and a CI job should tell "fix the YAML" from "this release may not run at this tier".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attestflow.compliance.gather import declared_sections
from attestflow.compliance.mapping import Mapping, frameworks, read_mapping
from attestflow.compliance.vocabulary import DECLARED, GATE, POLICY, Requirement
from attestflow.errors import ConfigError, GateFailedError

if TYPE_CHECKING:
    from attestflow.config import ReleaseConfig
    from attestflow.policy import GatePolicy


def cannot_meet(
    req: Requirement, cfg: ReleaseConfig, policy: GatePolicy, sections: dict[str, str]
) -> str | None:
    """Why a release with `cfg` and `policy` cannot produce the evidence `req`, or None when it can."""
    if req.kind in (GATE, POLICY):
        return (
            None if req.parameter in policy.run else f"gate {req.parameter} is not in the policy's run list"
        )
    if req.kind == DECLARED:
        return None if req.parameter in sections else f"{cfg.model_card.path} has no {req.parameter} section"
    why = {
        "approval:human": "approve.mode is auto" if cfg.approve.mode != "human" else None,
        "sensitive_attribute": "data.sensitive is unset" if not cfg.data.sensitive else None,
        "data_snapshot": "snapshot.push is false" if not cfg.snapshot.push else None,
        "attributions": "explain.enabled is false" if not cfg.explain.enabled else None,
    }
    return why.get(req.kind)


def required_mappings(cfg: ReleaseConfig) -> list[Mapping]:
    """Every mapping in ``compliance.mappings``; at a tier that requires controls, a folder without one is bad config."""
    folder = cfg.compliance.mappings
    names = frameworks(folder)
    if not names and cfg.compliance.risk_tier == "high":
        raise ConfigError(f"compliance.risk_tier high needs the control mappings, and {folder} holds none")
    return [read_mapping(folder / f"{name}.yaml") for name in names]


def unmet(cfg: ReleaseConfig, policy: GatePolicy) -> list[str]:
    """One line per requirement of a control required at the config's risk tier that it cannot meet."""
    tier = cfg.compliance.risk_tier
    required = [(m, c) for m in required_mappings(cfg) for c in m.spec.controls if tier in c.required_when]
    if not required:
        return []
    sections = declared_sections(cfg.model_card.path)
    return [
        f"{m.spec.framework} {c.id} ({c.title}) requires {req}: {why}"
        for m, c in required
        for req in c.requirements
        if (why := cannot_meet(req, cfg, policy, sections))
    ]


def check_risk_tier(cfg: ReleaseConfig, policy: GatePolicy) -> None:
    """Refuse (`GateFailedError`) a release that cannot meet a control its risk tier requires."""
    reasons = unmet(cfg, policy)
    if reasons:
        tier = cfg.compliance.risk_tier
        raise GateFailedError([f"risk tier {tier}: {r}" for r in dict.fromkeys(reasons)])
