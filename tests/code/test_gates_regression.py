"""Gate `regression`: candidate vs champion, a paired bootstrap interval, and the first-release rule."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from attestflow.policy import BaselinePolicy, RegressionPolicy
from tasks.gates import regression
from tasks.gates.evaluation import Baseline
from tests.code.planted import Lab, bundled_policy, ignoring_input, torch_logits, train_model


def _champion(logits: np.ndarray) -> Baseline:
    return Baseline("champion", "models:/credit/1", logits=logits)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_equally_good_models_of_different_seeds_pass_either_way_round(lab: Lab, seed: int) -> None:
    other = torch_logits(train_model(lab.train, seed=seed), lab.held_out.x)
    ev = lab.evaluate(lab.good_onnx, baseline=_champion(other))
    assert ev.logits is not None
    swapped = replace(ev, logits=other, baseline=_champion(ev.logits))
    for decisions in (regression.gate(ev, bundled_policy()), regression.gate(swapped, bundled_policy())):
        assert [d.metric for d in decisions] == ["accuracy_change", "roc_auc_change"]
        for d in decisions:
            assert d.passed, d.reason
            assert d.ci is not None and d.ci[0] <= d.value <= d.ci[1]
            assert d.baseline_value is not None and "models:/credit/1" in d.reason


def test_a_better_champion_refuses_the_candidate_and_reports_the_interval(lab: Lab) -> None:
    champion = torch_logits(lab.good, lab.held_out.x)
    candidate = torch_logits(ignoring_input(lab.good), lab.held_out.x)
    ev = replace(lab.evaluate(lab.good_onnx, baseline=_champion(champion)), logits=candidate)
    decisions = regression.gate(ev, bundled_policy())
    assert not any(d.passed for d in decisions)
    acc = decisions[0]
    assert acc.ci is not None and acc.ci[1] < -0.02
    assert acc.margin == pytest.approx(acc.ci[1] + 0.02)
    assert "even the upper bound is a drop of more than 0.02" in acc.reason


def test_the_bootstrap_point_estimates_match_sklearn(lab: Lab) -> None:
    a = torch_logits(lab.good, lab.held_out.x)
    b = torch_logits(train_model(lab.train, seed=5, epochs=1), lab.held_out.x)
    y = lab.held_out.y
    rules = RegressionPolicy(metrics=[{"metric": "accuracy", "max_drop": 0.0}], resamples=200)
    diff, lo, hi = regression.paired_bootstrap("accuracy", y, a, b, rules)
    assert diff == pytest.approx(accuracy_score(y, a.argmax(1)) - accuracy_score(y, b.argmax(1)))
    auc, _, _ = regression.paired_bootstrap("roc_auc", y, a, b, rules)
    want = roc_auc_score(y, a[:, 1] - a[:, 0]) - roc_auc_score(y, b[:, 1] - b[:, 0])
    assert auc == pytest.approx(want)
    assert lo < diff < hi
    assert regression.paired_bootstrap("accuracy", y, a, b, rules) == (diff, lo, hi)


def test_first_release_follows_the_explicit_policy(lab: Lab) -> None:
    ev = lab.evaluate(lab.good_onnx, baseline=Baseline("champion", None))
    passes = regression.gate(ev, bundled_policy())
    assert all(d.passed and "absolute_only" in d.reason for d in passes)
    assert not regression.requires_approval(bundled_policy(), ev.baseline)
    strict = bundled_policy(baseline=BaselinePolicy(first_release="require_approval"))
    sent_to_a_person = regression.gate(ev, strict)
    assert all(d.passed for d in sent_to_a_person)
    assert all(d.reason == "first release: no baseline; human approval required" for d in sent_to_a_person)
    assert regression.requires_approval(strict, ev.baseline)
    champion = Baseline("champion", "models:/credit/1")
    assert not regression.requires_approval(strict, champion), "only a first release needs the person"


def test_a_champion_that_cannot_be_evaluated_fails_instead_of_passing(lab: Lab) -> None:
    broken = Baseline("champion", "models:/credit/1", problem="the registry failed: connection refused")
    decisions = regression.gate(lab.evaluate(lab.good_onnx, baseline=broken), bundled_policy())
    assert all(not d.passed and "connection refused" in d.reason for d in decisions)
