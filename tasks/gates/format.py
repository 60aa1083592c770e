"""Gate `format`: only a well-formed ONNX model, runnable by a trusted runtime, is deployable.

The rules are `attestflow.onnx_check`, the same check `attestflow verify`, promotion and
rollback run, so a model this gate refuses is never verified and the other way round. Here
they become decisions: one on whether the file is ONNX by content, then one per named check
(`onnx_check.CHECKS`: allowed operator domains, contained external data), each with the
problems it found as its reason.
"""

from __future__ import annotations

from attestflow.onnx_check import CHECKS, check_onnx
from attestflow.policy import GatePolicy
from attestflow.records import GateDecision
from tasks.gates.decisions import bound, cannot_run, judge
from tasks.gates.evaluation import Evaluation

GATE = "format"


def gate(ev: Evaluation, policy: GatePolicy) -> list[GateDecision]:
    """The ONNX content decision, then one decision per check in `onnx_check.CHECKS`."""
    digest = str(policy.digest())
    check = check_onnx(ev.onnx_path, allowed_domains=policy.format.allowed_domains)
    content = bound("invalid_onnx", 0, "at_most")
    if not check.is_onnx:
        return [judge(GATE, content, 1, digest, note=check.described)] + [
            cannot_run(GATE, bound(name, 0, "at_most"), check.described, digest) for name, _ in CHECKS
        ]
    decisions = [judge(GATE, content, 0, digest, note=check.described)]
    for finding in check.findings:
        decisions.append(
            judge(
                GATE,
                bound(finding.name, 0, "at_most"),
                len(finding.problems),
                digest,
                note="; ".join(finding.problems),
            )
        )
    return decisions
