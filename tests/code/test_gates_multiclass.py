"""The gates on a three-class model: multiclass metrics, and a clear word where a metric is binary only."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from attestflow.config import ValidateOnnxConfig
from attestflow.onnx_runtime import softmax
from attestflow.policy import RegressionPolicy
from tasks.gates import fairness, performance, regression, robustness
from tasks.gates.evaluation import Baseline
from tasks.validate_onnx import validate_onnx
from tests.code.planted import Lab, bundled_policy, ignoring_input, torch_logits, train_model

MULTICLASS = ["accuracy", "f1_macro", "f1_weighted", "roc_auc", "log_loss"]
SCORES: dict[str, Any] = {
    "accuracy": lambda y, z: accuracy_score(y, z.argmax(1)),
    "f1_macro": lambda y, z: f1_score(y, z.argmax(1), average="macro"),
    "f1_weighted": lambda y, z: f1_score(y, z.argmax(1), average="weighted"),
    "roc_auc": lambda y, z: roc_auc_score(y, softmax(z.astype(np.float64)), multi_class="ovr"),
    "log_loss": lambda y, z: log_loss(y, softmax(z.astype(np.float64))),
}
"""scikit-learn's own computation of each metric, to check the gates' numbers against."""


def _champion(logits: np.ndarray) -> Baseline:
    return Baseline("champion", "models:/species/1", logits=logits)


def _regression(*metrics: str, max_drop: float = 0.03) -> Any:
    rules = {"metrics": [{"metric": m, "max_drop": max_drop} for m in metrics], "resamples": 300}
    return bundled_policy(regression=rules)


def test_performance_judges_the_multiclass_metrics_and_says_what_replaces_f1(species_lab: Lab) -> None:
    thresholds = [{"metric": m, "threshold": 0.6} for m in ("accuracy", "f1_macro", "f1_weighted", "roc_auc")]
    thresholds += [
        {"metric": "log_loss", "direction": "at_most", "threshold": 1.0},
        {"metric": "f1", "threshold": 0.6},
    ]
    ev = species_lab.evaluate(species_lab.good_onnx)
    *multiclass, f1 = performance.gate(ev, bundled_policy(performance={"thresholds": thresholds}))
    assert [d.metric for d in multiclass] == MULTICLASS
    assert all(d.passed for d in multiclass), multiclass
    assert ev.logits is not None
    for d in multiclass:
        assert d.value == pytest.approx(SCORES[d.metric](species_lab.held_out.y, ev.logits))
    assert not f1.passed and math.isnan(f1.value)
    assert "f1 is defined for two classes only and this model has 3; use f1_macro or f1_weighted" in f1.reason


def test_the_three_class_bootstrap_point_estimates_match_scikit_learn(species_lab: Lab) -> None:
    x, y = species_lab.held_out.x, species_lab.held_out.y
    a = torch_logits(species_lab.good, x)
    b = torch_logits(train_model(species_lab.train, seed=5, epochs=1, n_classes=3), x)
    rules = RegressionPolicy(metrics=[{"metric": "accuracy", "max_drop": 0.0}], resamples=100)
    for metric in MULTICLASS:
        diff, lo, hi = regression.paired_bootstrap(metric, y, a, b, rules)
        assert diff == pytest.approx(SCORES[metric](y, a) - SCORES[metric](y, b), rel=1e-5), metric
        assert lo <= diff <= hi, metric


def test_an_equally_good_three_class_model_passes_regression_either_way_round(species_lab: Lab) -> None:
    other = torch_logits(train_model(species_lab.train, seed=1, n_classes=3), species_lab.held_out.x)
    ev = species_lab.evaluate(species_lab.good_onnx, baseline=_champion(other))
    assert ev.logits is not None
    swapped = replace(ev, logits=other, baseline=_champion(ev.logits))
    policy = _regression(*MULTICLASS, max_drop=0.05)
    for decisions in (regression.gate(ev, policy), regression.gate(swapped, policy)):
        assert [d.metric for d in decisions] == [f"{m}_change" for m in MULTICLASS]
        for d in decisions:
            assert d.passed, d.reason
            assert d.ci is not None and d.ci[0] <= d.value <= d.ci[1]


def test_a_worse_three_class_model_fails_regression_and_a_rise_in_log_loss_counts_as_the_drop(
    species_lab: Lab,
) -> None:
    x = species_lab.held_out.x
    good, worse = torch_logits(species_lab.good, x), torch_logits(ignoring_input(species_lab.good), x)
    ev = species_lab.evaluate(species_lab.good_onnx)
    refused = regression.gate(replace(ev, logits=worse, baseline=_champion(good)), _regression(*MULTICLASS))
    assert not any(d.passed for d in refused), refused
    loss = refused[-1]
    assert loss.metric == "log_loss_change" and loss.threshold == 0.03
    assert loss.ci is not None and loss.value > loss.ci[0] > 0.03
    assert loss.margin == pytest.approx(0.03 - loss.ci[0])
    assert "even the lower bound is a rise of more than 0.03 (log_loss is better lower)" in loss.reason

    improved = regression.gate(replace(ev, logits=good, baseline=_champion(worse)), _regression(*MULTICLASS))
    assert all(d.passed for d in improved), improved
    assert improved[-1].value < 0, "a lower log loss is an improvement, not a drop"


def test_regression_on_f1_of_three_classes_fails_and_names_the_multiclass_metrics(species_lab: Lab) -> None:
    logits = torch_logits(species_lab.good, species_lab.held_out.x)
    ev = species_lab.evaluate(species_lab.good_onnx, baseline=_champion(logits))
    (decision,) = regression.gate(ev, _regression("f1"))
    assert not decision.passed and decision.metric == "f1_change"
    assert "use f1_macro or f1_weighted" in decision.reason


def test_regression_refuses_to_compare_models_with_different_class_counts(lab: Lab, species_lab: Lab) -> None:
    two_classes = torch_logits(lab.good, lab.held_out.x)[: len(species_lab.held_out)]
    ev = species_lab.evaluate(species_lab.good_onnx, baseline=_champion(two_classes))
    decisions = regression.gate(ev, _regression("accuracy"))
    assert all(not d.passed and "has 2 classes and the candidate 3" in d.reason for d in decisions)


FAIRNESS = {
    "thresholds": [
        {"metric": "demographic_parity_difference", "direction": "at_most", "threshold": 0.2},
        {"metric": "equalized_odds_difference", "direction": "at_most", "threshold": 0.2},
        {"metric": "worst_group_accuracy", "threshold": 0.6},
        {"metric": "accuracy_difference", "direction": "at_most", "threshold": 0.1},
    ]
}


def test_fairness_on_three_classes_bounds_group_accuracies_and_says_which_metrics_apply(
    species_lab: Lab,
) -> None:
    ev = species_lab.evaluate(species_lab.good_onnx)
    assert ev.logits is not None and species_lab.held_out.sensitive is not None
    parity, odds, worst, gap = fairness.gate(ev, bundled_policy(fairness=FAIRNESS))
    for binary in (parity, odds):
        assert not binary.passed
        assert "defined for two classes only and this model has 3" in binary.reason
        assert "use worst_group_accuracy or accuracy_difference" in binary.reason
    groups = species_lab.held_out.sensitive
    correct = ev.logits.argmax(1) == species_lab.held_out.y
    by_group = [correct[groups == g].mean() for g in np.unique(groups)]
    assert worst.passed and worst.value == pytest.approx(min(by_group)) and "(group " in worst.reason
    assert gap.passed and gap.value == pytest.approx(max(by_group) - min(by_group))

    # The same model, but wrong on every row of group B: the accuracy gap says no.
    unfair = ev.logits.copy()
    unfair[groups == "B"] = np.roll(unfair[groups == "B"], 1, axis=1)
    gap = fairness.gate(replace(ev, logits=unfair), bundled_policy(fairness=FAIRNESS))[-1]
    assert not gap.passed and gap.value > 0.5 and "above the maximum 0.1" in gap.reason


def test_accuracy_difference_is_measured_on_a_binary_model_too(lab: Lab) -> None:
    ev = lab.evaluate(lab.good_onnx)
    assert ev.logits is not None and lab.held_out.sensitive is not None
    *_, gap = fairness.gate(ev, bundled_policy(fairness=FAIRNESS))
    correct = ev.logits.argmax(1) == lab.held_out.y
    by_group = [correct[lab.held_out.sensitive == g].mean() for g in np.unique(lab.held_out.sensitive)]
    assert gap.metric == "accuracy_difference" and gap.value == pytest.approx(max(by_group) - min(by_group))


def test_robustness_measures_a_three_class_model_under_noise_and_fgsm(species_lab: Lab) -> None:
    ev = species_lab.evaluate(species_lab.good_onnx, checkpoint=species_lab.good_checkpoint)
    rules = {"metric": "accuracy", "noise_scales": [0.1], "max_drop": 0.1, "fgsm_epsilon": 0.05}
    decisions = robustness.gate(ev, bundled_policy(robustness=rules))
    assert [d.metric for d in decisions] == ["accuracy_drop_noise_0.1", "accuracy_drop_fgsm_0.05"]
    assert all(d.passed and math.isfinite(d.value) for d in decisions), decisions

    # FGSM climbs the cross-entropy, which is the log loss: its drop in quality is a rise, and it is positive.
    strict = {**rules, "metric": "log_loss", "fgsm_max_drop": 0.001}
    *_, fgsm = robustness.gate(ev, bundled_policy(robustness=strict))
    assert fgsm.metric == "log_loss_drop_fgsm_0.05" and fgsm.value > 0.001 and not fgsm.passed


def test_robustness_on_f1_of_three_classes_fails_and_names_the_multiclass_metrics(species_lab: Lab) -> None:
    ev = species_lab.evaluate(species_lab.good_onnx, checkpoint=species_lab.good_checkpoint)
    rules = {"metric": "f1", "noise_scales": [0.1], "max_drop": 0.1, "fgsm_epsilon": 0.05}
    decisions = robustness.gate(ev, bundled_policy(robustness=rules))
    assert len(decisions) == 2
    assert all(not d.passed and "use f1_macro or f1_weighted" in d.reason for d in decisions)


def test_validate_onnx_scores_a_three_class_model(species_lab: Lab) -> None:
    val = validate_onnx(
        ValidateOnnxConfig(latency_runs=3),
        species_lab.data,
        species_lab.good_onnx,
        species_lab.good_checkpoint,
    )
    assert val.max_abs_diff <= 1e-4
    assert list(val.metrics) == MULTICLASS
    assert all(math.isfinite(v) for v in val.metrics.values())
