"""Gate `fairness`: per-group metrics over the sensitive attribute, and no silent pass without one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attestflow.dataset import split_table
from tasks.gates import fairness
from tasks.gates.evaluation import evaluation
from tests.code.planted import PASSED_SUITE, TABULAR, Lab, bundled_policy, linear_onnx


def test_a_good_model_passes_and_names_the_worst_served_group(lab: Lab) -> None:
    decisions = fairness.gate(lab.evaluate(lab.good_onnx), bundled_policy())
    assert [d.metric for d in decisions] == [
        "demographic_parity_difference",
        "equalized_odds_difference",
        "worst_group_accuracy",
    ]
    assert all(d.passed for d in decisions), decisions
    assert "(group " in decisions[2].reason


def test_a_model_that_decides_by_the_sensitive_attribute_is_refused(lab: Lab, tmp_path: Path) -> None:
    table = lab.table.assign(group_code=(lab.table["group"] == "B").astype(float))
    data = lab.data.model_copy(update={"features": [*lab.data.features, "group_code"]})
    weights = np.zeros((len(data.features), 2))
    weights[-1] = [-4.0, 4.0]
    onnx_path = linear_onnx(tmp_path / "unfair.onnx", weights, np.array([2.0, -2.0]))
    _, held_out = split_table(table, data, TABULAR)
    ev = evaluation(onnx_path, data, table, held_out, TABULAR, data_validation=PASSED_SUITE)
    by_metric = {d.metric: d for d in fairness.gate(ev, bundled_policy())}
    assert by_metric["demographic_parity_difference"].value == 1.0
    assert not by_metric["demographic_parity_difference"].passed
    assert "above the maximum 0.2" in by_metric["demographic_parity_difference"].reason
    assert not by_metric["equalized_odds_difference"].passed


def test_without_a_sensitive_attribute_the_gate_fails_and_says_why(lab: Lab) -> None:
    unset = lab.data.model_copy(update={"sensitive": None})
    _, held_out = split_table(lab.table, unset, TABULAR)
    ev = evaluation(lab.good_onnx, unset, lab.table, held_out, TABULAR)
    decisions = fairness.gate(ev, bundled_policy())
    assert all(not d.passed and "no sensitive attribute is configured" in d.reason for d in decisions)

    missing = lab.data.model_copy(update={"sensitive": "gender"})
    ev = evaluation(lab.good_onnx, missing, lab.table, split_table(lab.table, missing, TABULAR)[1], TABULAR)
    decisions = fairness.gate(ev, bundled_policy())
    assert all(not d.passed and "'gender' is not in the data" in d.reason for d in decisions)
