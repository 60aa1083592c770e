"""What the gates judge: the candidate ONNX model run in ONNX Runtime on the held-out rows.

The gates look at the artifact that would be deployed, not at the torch model it came from.
Everything they need is gathered once into an `Evaluation` (outputs, data, baseline, the
data validation result), so each gate is a pure function of it and of the policy. A file the
format gate refuses is never handed to ONNX Runtime, and a model that ONNX Runtime cannot run
does not stop the suite: the evaluation says why, and every gate that needs the model's
outputs fails with that reason while the others still decide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from attestflow.adapters import Inputs, ModelAdapter, n_rows
from attestflow.config import DataConfig
from attestflow.dataset import Split
from attestflow.errors import BadInputError
from attestflow.onnx_check import OnnxCheck, check_onnx
from attestflow.onnx_runtime import run_batched, session
from attestflow.policy import FormatPolicy
from attestflow.records import DataValidationRecord

Predict = Callable[[Inputs], np.ndarray]
"""Model inputs (by ONNX input name) -> class logits (rows × classes)."""


@dataclass(frozen=True, eq=False)
class Baseline:
    """The model the candidate is compared with: its outputs on the same rows, or why there are none."""

    alias: str
    uri: str | None
    """``models:/NAME/VERSION`` the alias points at; None when the alias is not set (first release)."""
    logits: np.ndarray | None = None
    problem: str | None = None
    """Why the baseline exists but could not be evaluated."""
    attributions: dict[str, Any] | None = None
    """The attributions in the baseline's verified bundle, where it has them."""


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The candidate's outputs on the held-out rows, and everything else the gates look at."""

    onnx_path: Path
    data: DataConfig
    table: pd.DataFrame
    """The whole dataset, for the data gates."""
    held_out: Split
    adapter: ModelAdapter
    """The model kind, for perturbations and for loading the torch checkpoint."""
    provider: str
    """The configured provider choice (``auto``, ``cpu``, ``cuda``)."""
    ran_on: str
    """The execution provider that actually ran the candidate; ``none`` when it could not run."""
    predict: Predict | None
    """The candidate in ONNX Runtime; None when ONNX Runtime cannot run it."""
    logits: np.ndarray | None
    problem: str | None = None
    """Why `predict` and `logits` are None."""
    baseline: Baseline | None = None
    checkpoint: Path | None = None
    """The torch checkpoint the ONNX model was exported from, for gradient attacks."""
    data_validation: DataValidationRecord | None = None
    bom: Path | None = None
    """The AI bill of materials of the bundle being judged (`attestflow.aibom`); None for a bare ONNX file."""
    attributions: Path | None = None
    """The candidate's attributions file (`attestflow.explain`), for the attribution gate."""


def onnx_predictor(onnx_path: Path, provider: str) -> tuple[Predict, str]:
    """A function running the model in ONNX Runtime, and the provider that actually runs it."""
    sess = session(onnx_path, provider)

    def predict(inputs: Inputs) -> np.ndarray:
        return run_batched(sess, inputs)

    return predict, sess.get_providers()[0]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


@dataclass(frozen=True, eq=False)
class ModelRun:
    """A model run in ONNX Runtime on some rows, or why it could not run."""

    predict: Predict | None
    logits: np.ndarray | None
    ran_on: str
    """The execution provider that ran it; ``none`` when it could not run."""
    problem: str | None = None


def run_model(onnx_path: Path, provider: str, inputs: Inputs) -> ModelRun:
    """Run the model on `inputs`; a model that cannot run, or gives no class logits, says why."""
    try:
        predict, ran_on = onnx_predictor(onnx_path, provider)
        logits = predict(inputs)
    except Exception as e:  # ONNX Runtime raises its own exception types for unloadable models
        return ModelRun(None, None, "none", f"ONNX Runtime cannot run {onnx_path.name}: {_first_line(e)}")
    if logits.ndim != 2 or logits.shape[0] != n_rows(inputs) or logits.shape[1] < 2:
        return ModelRun(
            None, None, ran_on, f"expected class logits (rows × classes), got shape {logits.shape}"
        )
    bad = int((~np.isfinite(logits)).any(axis=1).sum())
    if bad:
        return ModelRun(
            None,
            None,
            ran_on,
            f"the model's outputs are not finite (NaN or inf) on {bad} of {len(logits)} rows",
        )
    return ModelRun(predict, logits, ran_on)


def check_labels(y: np.ndarray, n_classes: int) -> None:
    """The labels are classes the model has (0 to `n_classes` - 1); others are bad input, not a metric."""
    unseen = sorted({int(v) for v in np.unique(y) if not 0 <= v < n_classes})
    if unseen:
        shown = ", ".join(str(v) for v in unseen[:5]) + (", ..." if len(unseen) > 5 else "")
        raise BadInputError(
            f"the data's labels include {shown}, which the model's {n_classes} classes (0-{n_classes - 1}) do not"
        )


def _refusal(check: OnnxCheck) -> str | None:
    """Why the format gate (which runs the same check) refuses the file, or None."""
    if not check.is_onnx:
        return check.described
    return (
        f"the format gate refused {check.path.name}: {'; '.join(check.problems)}" if check.problems else None
    )


def evaluation(
    onnx_path: Path,
    data: DataConfig,
    table: pd.DataFrame,
    held_out: Split,
    adapter: ModelAdapter,
    *,
    provider: str = "cpu",
    format_policy: FormatPolicy | None = None,
    baseline: Baseline | None = None,
    checkpoint: Path | None = None,
    data_validation: DataValidationRecord | None = None,
    bom: Path | None = None,
    attributions: Path | None = None,
) -> Evaluation:
    """Run the candidate on the held-out rows, unless the format gate refuses the file, and gather the rest."""
    refused = _refusal(
        check_onnx(onnx_path, allowed_domains=(format_policy or FormatPolicy()).allowed_domains)
    )
    run = (
        ModelRun(None, None, "none", refused) if refused else run_model(onnx_path, provider, held_out.inputs)
    )
    if run.logits is not None:
        check_labels(held_out.y, run.logits.shape[1])
    return Evaluation(
        onnx_path=onnx_path,
        data=data,
        table=table,
        held_out=held_out,
        adapter=adapter,
        provider=provider,
        ran_on=run.ran_on,
        predict=run.predict,
        logits=run.logits,
        problem=run.problem,
        baseline=baseline,
        checkpoint=checkpoint,
        data_validation=data_validation,
        bom=bom,
        attributions=attributions,
    )
