"""The evidence a compliance control can ask for: one fixed vocabulary, read by the mapping, the report and the tier.

A mapping (``configs/compliance/<framework>.yaml``) lists, for each control, the evidence
that meets it in these words and no others, so that a misspelt requirement is refused when
the mapping is loaded instead of silently reading as "missing". What each word means is said
here once; `attestflow.compliance.assess` says how each is judged on a version, and
`attestflow.compliance.tier` whether a release config can produce it at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import get_args

from attestflow.policy import GateName

PLAIN: dict[str, str] = {
    "signature": "the model signature over every file of the bundle verifies with the trusted key",
    "provenance": "signed SLSA provenance names exactly this model.onnx, this bundle and this model",
    "data_snapshot": "the data snapshot the provenance names is still in the DVC remote with that md5",
    "data_manifest": "the per-file SHA-256 manifest of the training data is in the signed bundle",
    "metrics": "held-out metrics, ONNX parity and latency (attestation/metrics.json) are in the signed bundle",
    "release_config": "the validated release config (attestation/config.json) is in the signed bundle",
    "sensitive_attribute": "the signed release config names the sensitive attribute (data.sensitive)",
    "gate_verdict": "a signed gate verdict about this model.onnx and version PASSED",
    "approval": "a signed approval of this release bundle, not undone by the canary",
    "approval:human": "that signed approval was given by a person (approve.mode human)",
    "canary": "a signed canary verdict about this model.onnx PASSED",
    "audit_log": "the hash-chained audit log verifies and records this version",
    "model_card": "a signed model card statement about this model.onnx",
    "aibom": "the AI bill of materials (attestation/aibom.cdx.json) is in the signed bundle",
    "attributions": "feature attributions (attestation/attributions.json) are in the signed bundle",
}
"""Requirements without a parameter, and what each asks for."""

GATE, POLICY, DECLARED = "gate", "policy", "declared"
PARAMETERS: dict[str, str] = {
    GATE: "every decision of gate {} in the signed PASSED gate verdict passed",
    POLICY: "gate {} runs under the gate policy (the signed verdict's, when it is the repository's)",
    DECLARED: "the model card section {} is written (signed in the model card, or in configs/model_card.yaml)",
}
"""Requirements ``kind:parameter``, and what each asks for ({} is the parameter)."""

MODEL_CARD_SECTIONS = (
    "intended_use",
    "out_of_scope_uses",
    "limitations",
    "ethical_considerations",
    "owners",
    "references",
)
"""The human-written sections of ``configs/model_card.yaml`` a requirement ``declared:`` may name."""


def gate_names() -> tuple[str, ...]:
    """The gates a policy can run (`attestflow.policy.GateName`), which ``gate:`` and ``policy:`` may name."""
    return get_args(GateName)


@dataclass(frozen=True)
class Requirement:
    """One piece of evidence a control asks for."""

    kind: str
    """A `PLAIN` name, or one of `PARAMETERS`."""
    parameter: str | None = None

    def __str__(self) -> str:
        return self.kind if self.parameter is None else f"{self.kind}:{self.parameter}"

    @property
    def meaning(self) -> str:
        """What the requirement asks for, in words."""
        return PLAIN[self.kind] if self.parameter is None else PARAMETERS[self.kind].format(self.parameter)


def parse_requirement(text: str) -> Requirement:
    """The requirement `text` names; anything outside the vocabulary is a `ValueError` saying what is allowed."""
    if text in PLAIN:
        return Requirement(text)
    kind, _, parameter = text.partition(":")
    allowed = {GATE: gate_names(), POLICY: gate_names(), DECLARED: MODEL_CARD_SECTIONS}
    if kind in allowed and re.fullmatch(r"[a-z_]+", parameter):
        if parameter not in allowed[kind]:
            raise ValueError(f"{text!r}: {kind}: takes one of {', '.join(allowed[kind])}")
        return Requirement(kind, parameter)
    raise ValueError(
        f"unknown evidence {text!r}: one of {', '.join(PLAIN)}, or gate:<gate>, policy:<gate>, declared:<section>"
    )
