"""Gate `robustness`: how much the metric drops when the inputs are perturbed a little.

Two perturbations: the adapter's own corruption at the policy's scales (Gaussian noise
relative to each feature's standard deviation for tabular inputs, a share of tokens replaced
for text), run through ONNX Runtime on the deployed artifact; and FGSM, a one-step
gradient attack computed on the torch model the ONNX was exported from (ONNX Runtime gives
no gradients) and then scored in ONNX Runtime again. All perturbed copies of the held-out
rows go through the model in one batch, so the gate stays cheap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from attestflow.adapters import Inputs, ModelAdapter
from attestflow.errors import BadInputError
from attestflow.onnx_runtime import classification_metrics
from attestflow.policy import GatePolicy, RobustnessPolicy, binary_only, quality_drop
from attestflow.records import GateDecision
from tasks.gates.decisions import bound, cannot_run, judge
from tasks.gates.evaluation import Evaluation, Predict

GATE = "robustness"
PARITY_TOLERANCE = 1e-3
"""Largest |torch - ONNX| logit difference at which the checkpoint counts as the same model."""


def noisy_metrics(
    predict: Predict, adapter: ModelAdapter, inputs: Inputs, y: np.ndarray, rules: RobustnessPolicy
) -> list[float]:
    """The metric at each noise scale, averaged over the policy's repeats."""
    rng = np.random.default_rng(rules.seed)
    scales = np.repeat(rules.noise_scales, rules.noise_repeats)
    noisy = [adapter.perturb(inputs, float(s), rng) for s in scales]
    logits = predict(_stack(noisy)).reshape(len(scales), len(y), -1)
    scores = [classification_metrics(y, block)[rules.metric] for block in logits]
    return [float(np.mean(s)) for s in np.reshape(scores, (len(rules.noise_scales), rules.noise_repeats))]


def _stack(copies: list[Inputs]) -> Inputs:
    """Copies of the same rows as one batch; padded inputs (token ids) are padded to the longest copy."""
    out = {}
    for name in copies[0]:
        arrays = [c[name] for c in copies]
        width = max(a.shape[1] for a in arrays) if arrays[0].ndim == 2 else None
        if width is not None and any(a.shape[1] != width for a in arrays):
            arrays = [np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in arrays]
        out[name] = np.concatenate(arrays)
    return out


def fgsm_inputs(
    adapter: ModelAdapter,
    checkpoint: Path,
    x: np.ndarray,
    y: np.ndarray,
    epsilon: float,
    reference: np.ndarray,
) -> np.ndarray:
    """FGSM copies of `x` from the torch checkpoint; refuses a checkpoint that is not the ONNX model."""
    model = adapter.load(checkpoint).eval()
    xt = torch.from_numpy(x).requires_grad_(True)
    logits = model(xt)
    diff = float(np.abs(logits.detach().numpy() - reference).max())
    if not diff <= PARITY_TOLERANCE:
        raise BadInputError(f"{checkpoint.name} is not the model that was exported (max |diff| {diff:.3g})")
    torch.nn.functional.cross_entropy(logits, torch.tensor(y)).backward()
    if xt.grad is None:
        raise RuntimeError("no gradient reached the input")
    step = epsilon * x.std(axis=0) * np.sign(xt.grad.numpy())
    return (x + step).astype(np.float32)


def _unfit(ev: Evaluation, rules: RobustnessPolicy) -> str | None:
    """Why the policy's metric cannot judge this model (a two-class metric on more classes), or None."""
    return binary_only(rules.metric, ev.logits.shape[1]) if ev.logits is not None else None


def fgsm_decision(ev: Evaluation, rules: RobustnessPolicy, clean: float, digest: str) -> GateDecision:
    """The metric drop under FGSM at the policy's epsilon."""
    rule = bound(f"{rules.metric}_drop_fgsm_{rules.fgsm_epsilon:g}", rules.fgsm_max_drop, "at_most")
    unfit = _unfit(ev, rules)
    if unfit is not None:
        return cannot_run(GATE, rule, unfit, digest)
    if ev.checkpoint is None or ev.predict is None or ev.logits is None or rules.fgsm_epsilon is None:
        return cannot_run(GATE, rule, ev.problem or "no torch checkpoint of this model was given", digest)
    (name, x), *others = ev.held_out.inputs.items()
    if others or not np.issubdtype(x.dtype, np.floating):
        why = (
            "FGSM needs one float input (token ids have no gradient); leave fgsm_epsilon unset for this model"
        )
        return cannot_run(GATE, rule, why, digest)
    y = ev.held_out.y
    try:
        attacked = fgsm_inputs(ev.adapter, ev.checkpoint, x, y, rules.fgsm_epsilon, ev.logits)
    except BadInputError as e:
        return cannot_run(GATE, rule, str(e), digest)
    attacked_score = classification_metrics(y, ev.predict({name: attacked}))[rules.metric]
    return judge(GATE, rule, quality_drop(rules.metric, clean, attacked_score), digest)


def gate(ev: Evaluation, policy: GatePolicy) -> list[GateDecision]:
    """One decision per noise scale, and one for FGSM when the policy sets an epsilon.

    A drop is a loss of quality: a fall of a higher-is-better metric, a rise of log loss.
    """
    rules = policy.robustness
    if rules is None:
        return []
    digest = str(policy.digest())
    noise = [bound(f"{rules.metric}_drop_noise_{s:g}", rules.max_drop, "at_most") for s in rules.noise_scales]
    unfit = _unfit(ev, rules)
    if ev.predict is None or ev.logits is None or unfit is not None:
        decisions = [cannot_run(GATE, r, unfit or ev.problem or "no model outputs", digest) for r in noise]
        clean = float("nan")
    else:
        clean = classification_metrics(ev.held_out.y, ev.logits)[rules.metric]
        scores = noisy_metrics(ev.predict, ev.adapter, ev.held_out.inputs, ev.held_out.y, rules)
        decisions = [
            judge(GATE, r, quality_drop(rules.metric, clean, s), digest)
            for r, s in zip(noise, scores, strict=True)
        ]
    if rules.fgsm_epsilon is not None:
        decisions.append(fgsm_decision(ev, rules, clean, digest))
    return decisions
