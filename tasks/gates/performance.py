"""Gate `performance`: absolute thresholds on the candidate's held-out metrics.

The metrics are computed from ONNX Runtime's outputs on the held-out rows of the snapshot,
so the numbers belong to the artifact that would be deployed.
"""

from __future__ import annotations

from attestflow.onnx_runtime import classification_metrics
from attestflow.policy import GatePolicy, binary_only
from attestflow.records import GateDecision
from tasks.gates.decisions import cannot_run, judge
from tasks.gates.evaluation import Evaluation

GATE = "performance"


def gate(ev: Evaluation, policy: GatePolicy) -> list[GateDecision]:
    """One decision per configured metric threshold; a two-class metric on more classes says what to use."""
    rules = policy.performance
    if rules is None:
        return []
    digest = str(policy.digest())
    if ev.logits is None:
        return [cannot_run(GATE, t, ev.problem or "no model outputs", digest) for t in rules.thresholds]
    metrics = classification_metrics(ev.held_out.y, ev.logits)
    n_classes = ev.logits.shape[1]
    return [
        cannot_run(GATE, t, unfit, digest)
        if (unfit := binary_only(t.metric, n_classes))
        else judge(GATE, t, metrics[t.metric], digest)
        for t in rules.thresholds
    ]
