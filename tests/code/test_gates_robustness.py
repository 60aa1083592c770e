"""Gate `robustness`: metric drop under input noise (ONNX Runtime) and FGSM (from the torch model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attestflow.policy import RobustnessPolicy
from tasks.gates import robustness
from tests.code.planted import TABULAR, Lab, bundled_policy, flipping_under_noise, train_model


def test_a_good_model_passes_noise_and_fgsm(lab: Lab) -> None:
    decisions = robustness.gate(lab.evaluate(lab.good_onnx, checkpoint=lab.good_checkpoint), bundled_policy())
    assert [d.metric for d in decisions] == [
        "accuracy_drop_noise_0.1",
        "accuracy_drop_noise_0.3",
        "accuracy_drop_fgsm_0.05",
    ]
    assert all(d.passed for d in decisions), decisions
    noise_01, _, fgsm = (d.value for d in decisions)
    assert fgsm > noise_01, "a gradient attack of half the size should hurt more than random noise"


def test_a_model_whose_output_flips_under_tiny_noise_is_refused(lab: Lab, tmp_path: Path) -> None:
    flipping = flipping_under_noise(lab.good_onnx, tmp_path / "model.onnx")
    ev = lab.evaluate(flipping, checkpoint=lab.good_checkpoint)
    clean = (ev.logits.argmax(1) == lab.held_out.y).mean() if ev.logits is not None else 0.0
    assert clean > 0.8, "the planted model must be as accurate as the good one on clean rows"
    by_metric = {d.metric: d for d in robustness.gate(ev, bundled_policy())}
    noisy = by_metric["accuracy_drop_noise_0.1"]
    assert not noisy.passed and noisy.value > 0.1
    assert "above the maximum 0.05" in noisy.reason


def test_noise_results_are_fixed_by_the_seed(lab: Lab) -> None:
    rules = RobustnessPolicy(noise_scales=[0.2], noise_repeats=2, max_drop=0.1)
    ev = lab.evaluate(lab.good_onnx)
    assert ev.predict is not None
    first = robustness.noisy_metrics(ev.predict, TABULAR, lab.held_out.inputs, lab.held_out.y, rules)
    assert first == robustness.noisy_metrics(ev.predict, TABULAR, lab.held_out.inputs, lab.held_out.y, rules)


def test_fgsm_fails_without_the_matching_checkpoint(lab: Lab, tmp_path: Path) -> None:
    ev = lab.evaluate(lab.good_onnx)
    no_checkpoint = robustness.gate(ev, bundled_policy())[-1]
    assert not no_checkpoint.passed and "no torch checkpoint" in no_checkpoint.reason

    from attestflow.tabular import save_checkpoint

    other = tmp_path / "other.safetensors"
    save_checkpoint(train_model(lab.train, seed=9, epochs=1), other)
    wrong = robustness.gate(lab.evaluate(lab.good_onnx, checkpoint=other), bundled_policy())[-1]
    assert not wrong.passed and "is not the model that was exported" in wrong.reason
    assert np.isnan(wrong.value)
