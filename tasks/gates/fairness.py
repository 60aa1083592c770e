"""Gate `fairness`: per-group metrics of the candidate over the sensitive attribute.

The sensitive attribute (``data.sensitive``) is not a model input, yet a model can still
treat groups differently through correlated features. fairlearn's MetricFrame gives the
per-group view; the policy bounds the accuracy of the worst-served group, the gap between the
best- and worst-served groups' accuracy (any number of classes), and demographic parity and
equalized odds differences (defined on two classes: on more, the gate says which to use).
Without a sensitive attribute the gate cannot tell, so it fails rather than passing unseen.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from attestflow.policy import GatePolicy, binary_only
from attestflow.records import GateDecision
from tasks.gates.decisions import cannot_run, judge
from tasks.gates.evaluation import Evaluation

GATE = "fairness"


def group_frame(y: np.ndarray, pred: np.ndarray, sensitive: np.ndarray, n_classes: int = 2) -> Any:
    """fairlearn's MetricFrame of accuracy, the rate of the last class predicted and the rows, per group."""
    from fairlearn.metrics import MetricFrame, count
    from sklearn.metrics import accuracy_score

    positive = n_classes - 1

    def selection_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(np.mean(np.asarray(y_pred) == positive)) if len(y_pred) else float("nan")

    return MetricFrame(
        metrics={"accuracy": accuracy_score, "selection_rate": selection_rate, "rows": count},
        y_true=y,
        y_pred=pred,
        sensitive_features=sensitive,
    )


def group_metrics(
    y: np.ndarray, pred: np.ndarray, sensitive: np.ndarray, n_classes: int = 2
) -> list[dict[str, Any]]:
    """Per group: rows, accuracy and selection rate, as the fairness gate sees them (for the model card)."""
    by_group = group_frame(y, pred, sensitive.astype(str), n_classes).by_group
    return [
        {
            "group": str(group),
            "rows": int(row["rows"]),
            "accuracy": float(row["accuracy"]),
            "selection_rate": float(row["selection_rate"]),
        }
        for group, row in by_group.iterrows()
    ]


def fairness_metrics(
    y: np.ndarray, pred: np.ndarray, sensitive: np.ndarray, n_classes: int = 2
) -> tuple[dict[str, float], str]:
    """The fairness metrics defined for `n_classes` classes, and the name of the group with the lowest accuracy."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    frame = group_frame(y, pred, sensitive, n_classes)
    by_group = frame.by_group["accuracy"]
    values = {
        "worst_group_accuracy": float(by_group.min()),
        "accuracy_difference": float(frame.difference()["accuracy"]),
    }
    binary = {
        "demographic_parity_difference": demographic_parity_difference,
        "equalized_odds_difference": equalized_odds_difference,
    }
    for name, metric in binary.items():
        if binary_only(name, n_classes) is None:
            values[name] = float(metric(y, pred, sensitive_features=sensitive))
    return values, str(by_group.idxmin())


def sensitive_problem(ev: Evaluation) -> str | None:
    """Why the gate cannot look at groups, or None when it can."""
    name = ev.data.sensitive
    if name is None:
        return "no sensitive attribute is configured (data.sensitive)"
    if name not in ev.table.columns or ev.held_out.sensitive is None:
        return f"the sensitive column {name!r} is not in the data"
    groups = np.unique(ev.held_out.sensitive.astype(str))
    if len(groups) < 2:
        return f"the held-out rows have only one group of {name!r}"
    return None


def gate(ev: Evaluation, policy: GatePolicy) -> list[GateDecision]:
    """One decision per configured fairness threshold."""
    rules = policy.fairness
    if rules is None:
        return []
    digest = str(policy.digest())
    why = sensitive_problem(ev) or ev.problem
    if why is not None or ev.logits is None or ev.held_out.sensitive is None:
        return [cannot_run(GATE, t, why or "no model outputs", digest) for t in rules.thresholds]
    sensitive = ev.held_out.sensitive.astype(str)
    n_classes = ev.logits.shape[1]
    values, worst = fairness_metrics(ev.held_out.y, ev.logits.argmax(axis=1), sensitive, n_classes)
    decisions = [
        cannot_run(GATE, t, unfit, digest)
        if (unfit := binary_only(t.metric, n_classes))
        else judge(GATE, t, values[t.metric], digest)
        for t in rules.thresholds
    ]
    return [
        replace(d, reason=f"{d.reason} (group {worst})") if d.metric == "worst_group_accuracy" else d
        for d in decisions
    ]
