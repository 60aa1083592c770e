"""Attributions: how much each input feature (or token) moved the model's decision.

Method: Integrated Gradients (captum) on the torch checkpoint the ONNX model was exported
from, chosen over permutation importance on the ONNX model because it gives per-row
attributions as well as global ones from one pass, needs no extra model runs per feature,
and is checkable: its completeness property says a row's attributions sum to
f(x) - f(baseline), which the tests verify. The checkpoint is the model `validate_onnx`
already showed to agree with the ONNX file; it is read with the adapter's safetensors
loader, never unpickled.

The explained output f is the logit of the class the model predicts for the row, minus the
mean of its logits (softmax does not change when every logit moves together, so this is the
decision itself, and a model whose output ignores its input gets attributions of zero).

Tabular (any adapter with one float input): the baseline is the median of the explained rows per feature; a
missing value takes the baseline's, so it carries no attribution. Text (``input_ids`` into a
transformer, the ``text_classifier`` adapter): LayerIntegratedGradients on the
word embeddings, summed over the embedding dimension, with every word piece of the baseline
replaced by the padding token ([CLS], [SEP] and padding kept), few steps so that MiniLM on a
CPU stays quick. A token's global attribution is the sum of its absolute attributions over
the rows divided by the number of rows (the same mean over rows as a feature's, with zero
where the token is absent); ``features`` and ``global`` keep the `TOP_TOKENS` largest,
``share`` and ``total`` count every token, and each example also lists its ``tokens`` in
order as ``[token, attribution]`` pairs.

The file (``attestation/attributions.json`` in the signed bundle) holds ``method``, ``why``,
``target``, ``features``, ``global`` (feature -> mean |attribution|), ``share`` (feature ->
fraction of ``total``), ``total``, ``examples`` (``row``: its index among the held-out rows,
``prediction``: the predicted class's label, ``attributions``), ``rows``, ``seed``, and
``baseline`` and ``max_convergence_delta`` (the largest completeness error seen).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from attestflow.adapters import ModelAdapter, take

if TYPE_CHECKING:
    from attestflow.adapters.text import TextClassifier, TextClassifierAdapter
from attestflow.config import DataConfig, ExplainConfig
from attestflow.dataset import Split

TABULAR_STEPS = 32
TEXT_STEPS = 8
"""Integration steps: the MLP is cheap; MiniLM runs a forward and backward pass per step and row."""
TEXT_BATCH = 16
TOP_TOKENS = 30
TARGET = "logit of the predicted class minus the mean logit"
Attributions = dict[str, Any]


def read_attributions(path: Path | None) -> Attributions | None:
    """The attributions file at `path`, or None when there is none (or it is not a JSON object)."""
    if path is None or not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def _centered(model: nn.Module) -> Callable[..., torch.Tensor]:
    """The model's logits minus their mean per row: the decision, whatever constant all logits share."""

    def forward(*args: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = model(*args)
        return out - out.mean(dim=1, keepdim=True)

    return forward


def _label(data: DataConfig, c: int) -> Any:
    return data.classes[c] if data.classes and c < len(data.classes) else c


def _rows(n: int, cfg: ExplainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The explained held-out rows (a seeded sample of `cfg.rows`), and the examples among them."""
    rng = np.random.default_rng(cfg.seed)
    rows = np.sort(rng.choice(n, size=min(cfg.rows, n), replace=False))
    examples = np.sort(rng.choice(len(rows), size=min(cfg.examples, len(rows)), replace=False))
    return rows, examples


def _summary(
    names: list[str], per_row: np.ndarray, kept: list[str] | None = None
) -> tuple[dict[str, float], dict[str, float], float]:
    """Global mean |attribution| per name (of `kept`, default all), each one's share of the total, the total."""
    mean_abs = np.abs(per_row).mean(axis=0) if len(per_row) else np.zeros(len(names))
    total = float(mean_abs.sum())
    every = dict(zip(names, (float(v) for v in mean_abs), strict=True))
    keep = kept if kept is not None else names
    glob = {n: every[n] for n in keep}
    share = {n: (every[n] / total if total > 0 else 0.0) for n in keep}
    return glob, share, total


def tabular_attributions(
    model: nn.Module, x: np.ndarray, steps: int = TABULAR_STEPS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integrated Gradients of each row of `x`: (attributions, predicted class, baseline row, |delta| per row)."""
    from captum.attr import IntegratedGradients

    model.eval()
    base = np.nanmedian(x, axis=0) if len(x) else np.zeros(x.shape[1])
    base = np.nan_to_num(base).astype(np.float32)
    filled = np.where(np.isnan(x), base, x).astype(np.float32)
    xt, bt = torch.from_numpy(filled), torch.from_numpy(np.tile(base, (len(x), 1)))
    forward = _centered(model)
    with torch.no_grad():
        pred = model(xt).argmax(dim=1)
    ig = IntegratedGradients(forward)
    attr, delta = ig.attribute(xt, baselines=bt, target=pred, n_steps=steps, return_convergence_delta=True)
    return attr.detach().numpy(), pred.numpy(), base, np.abs(delta.detach().numpy())


def _explain_tabular(
    adapter: ModelAdapter, model: nn.Module, held_out: Split, data: DataConfig, cfg: ExplainConfig
) -> Attributions:
    (name, x), *_ = held_out.inputs.items()
    rows, examples = _rows(len(x), cfg)
    attr, pred, base, delta = tabular_attributions(model, x[rows])
    width = attr.shape[1]
    names = list(data.features) if len(data.features) == width else [f"{name}[{i}]" for i in range(width)]
    glob, share, total = _summary(names, attr)
    return {
        "method": "integrated_gradients",
        "why": "captum Integrated Gradients on the torch checkpoint: global and per-row attributions from "
        "one pass, and complete (a row's attributions sum to f(x) - f(baseline))",
        "target": TARGET,
        "baseline": {n: float(v) for n, v in zip(names, base, strict=True)},
        "features": names,
        "global": glob,
        "share": share,
        "total": total,
        "examples": [
            {
                "row": int(rows[i]),
                "prediction": _label(data, int(pred[i])),
                "attributions": {n: float(v) for n, v in zip(names, attr[i], strict=True)},
            }
            for i in examples
        ],
        "rows": len(rows),
        "seed": cfg.seed,
        "max_convergence_delta": float(delta.max()) if len(delta) else 0.0,
    }


def _explain_text(
    adapter: TextClassifierAdapter,
    model: TextClassifier,
    held_out: Split,
    data: DataConfig,
    cfg: ExplainConfig,
) -> Attributions:
    from captum.attr import LayerIntegratedGradients
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(adapter.tokenizer_file))
    special = set(np.asarray(adapter.special_ids).tolist())
    pad = int(adapter.pad_id)
    rows, examples = _rows(len(held_out.inputs["input_ids"]), cfg)
    inputs = take(held_out.inputs, rows)
    model.eval()
    layer = model.encoder.embeddings.word_embeddings
    lig = LayerIntegratedGradients(_centered(model), layer)
    sums: defaultdict[str, float] = defaultdict(float)
    shown: list[dict[str, Any]] = []
    deltas: list[float] = []
    for start in range(0, len(rows), TEXT_BATCH):
        ids = torch.from_numpy(inputs["input_ids"][start : start + TEXT_BATCH])
        mask = torch.from_numpy(inputs["attention_mask"][start : start + TEXT_BATCH])
        keep = torch.from_numpy(np.isin(ids.numpy(), list(special))) | (mask == 0)
        base = torch.where(keep, ids, torch.full_like(ids, pad))
        with torch.no_grad():
            pred = model(ids, mask).argmax(dim=1)
        attr, delta = lig.attribute(
            ids,
            baselines=base,
            additional_forward_args=(mask,),
            target=pred,
            n_steps=TEXT_STEPS,
            return_convergence_delta=True,
        )
        deltas += np.abs(delta.detach().numpy()).tolist()
        per_token = attr.sum(dim=-1).detach().numpy()
        for r in range(len(ids)):
            pairs = [
                (tokenizer.id_to_token(int(t)) or str(int(t)), float(a))
                for t, a, m in zip(ids[r].tolist(), per_token[r], mask[r].tolist(), strict=True)
                if m and int(t) not in special
            ]
            for token, a in pairs:
                sums[token] += abs(a)
            if start + r in examples:
                own: defaultdict[str, float] = defaultdict(float)
                for token, a in pairs:
                    own[token] += a
                shown.append(
                    {
                        "row": int(rows[start + r]),
                        "prediction": _label(data, int(pred[r])),
                        "attributions": dict(own),
                        "tokens": [[t, a] for t, a in pairs],
                    }
                )
    n = max(1, len(rows))
    total = float(sum(sums.values()) / n)
    top = sorted(sums, key=lambda t: -sums[t])[:TOP_TOKENS]
    return {
        "method": "layer_integrated_gradients",
        "why": "captum LayerIntegratedGradients on the word embeddings (token ids have no gradient), "
        f"{TEXT_STEPS} steps so that the encoder on a CPU stays quick",
        "target": TARGET,
        "baseline": "every word piece replaced by the padding token; [CLS], [SEP] and padding kept",
        "features": top,
        "global": {t: sums[t] / n for t in top},
        "share": {t: (sums[t] / n / total if total > 0 else 0.0) for t in top},
        "total": total,
        "examples": shown,
        "rows": len(rows),
        "seed": cfg.seed,
        "max_convergence_delta": max(deltas, default=0.0),
    }


def explain_model(
    adapter: ModelAdapter, checkpoint: Path, held_out: Split, data: DataConfig, cfg: ExplainConfig
) -> Attributions:
    """The attributions of the model in `checkpoint` on `cfg.rows` sampled held-out rows (see the module)."""
    from attestflow.adapters.text import TextClassifier, TextClassifierAdapter

    model = adapter.load(checkpoint)
    if isinstance(adapter, TextClassifierAdapter) and isinstance(model, TextClassifier):
        return _explain_text(adapter, model, held_out, data, cfg)
    arrays = list(held_out.inputs.values())
    if len(arrays) == 1 and np.issubdtype(arrays[0].dtype, np.floating):
        return _explain_tabular(adapter, model, held_out, data, cfg)
    return {
        "method": "none",
        "why": f"no attribution method for inputs {', '.join(held_out.inputs)} "
        "(one float input, or token ids into a transformer encoder, are explained)",
        "target": TARGET,
        "features": [],
        "global": {},
        "share": {},
        "total": 0.0,
        "examples": [],
        "rows": 0,
        "seed": cfg.seed,
    }
