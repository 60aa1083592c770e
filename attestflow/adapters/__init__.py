"""Model adapters: everything the pipeline needs to know about one kind of model.

The flow, the exporter, ONNX validation, the gates and the canary are model-agnostic: they
hand rows of a table to an adapter and get back named input arrays (`Inputs`), whose names
are the ONNX model's input names and whose first axis is the row. A model is an
``nn.Module`` whose ``forward`` takes those inputs as tensors, positionally in
``input_names`` order, and returns class logits (rows x classes).

Two adapters ship: ``tabular`` (an MLP over numeric columns, fine-tuned from a base checkpoint
or trained from scratch) and ``text_classifier`` (a pretrained transformer encoder with a
classification head, always from a base). A user's
own is named by import path in config: ``model.adapter: my_pkg.module:MyAdapter``; the class
is constructed with the `ModelConfig` and must satisfy `ModelAdapter`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
from torch import nn

from attestflow.config import DataConfig, ModelConfig
from attestflow.digests import Digest, json_digest
from attestflow.errors import BadInputError

Inputs = dict[str, np.ndarray]
"""Model inputs by ONNX input name; every array's first axis is the row."""

MissingRule = Literal["refuse", "median"]
"""``data.missing``: what the model does with a missing input value."""

SHIPPED = {
    "tabular": "attestflow.adapters.tabular:TabularAdapter",
    "text_classifier": "attestflow.adapters.text:TextClassifierAdapter",
}


@dataclass(frozen=True)
class ScratchModel:
    """A model built from the data's shape alone, with no base weights, and the spec it was built from."""

    net: nn.Module
    architecture: dict[str, Any]
    """What decides the network's shape (kind, input width, layers, classes), as plain JSON values."""

    @property
    def digest(self) -> Digest:
        """SHA-256 of the architecture spec: what training started from, in place of a base's digest."""
        value = json_digest(self.architecture).value
        return Digest("sha256", value, "canonical JSON of the architecture spec (trained from scratch)")


@runtime_checkable
class ModelAdapter(Protocol):
    """What the pipeline asks of a kind of model."""

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model's inputs, in the order ``forward`` takes them; also the ONNX input names."""
        ...

    def encode(self, df: pd.DataFrame, data: DataConfig) -> Inputs:
        """The model inputs for the rows of `df` (select columns, tokenise, ...)."""
        ...

    def default_base(self) -> Path | None:
        """The base weights to fine-tune when ``fine_tune.base_checkpoint`` is not set."""
        ...

    def from_scratch(self, train: Inputs, n_classes: int) -> ScratchModel | None:
        """A new, untrained model shaped by the training inputs and class count; None: this kind needs a base."""
        ...

    def weights_file(self, base: Path) -> Path:
        """The weights file inside `base` (a file or a folder), checked for a safe format before loading."""
        ...

    def base_digest(self, base: Path) -> Digest:
        """Digest of everything in `base` that the model depends on (weights, tokenizer, config)."""
        ...

    def load_base(self, base: Path, weights: Path, n_classes: int) -> nn.Module:
        """The model to fine-tune, from `weights` (a safetensors file) and the rest of `base`."""
        ...

    def convert_state_dict(self, state: dict[str, Any], out: Path) -> None:
        """Write a state dict imported from a scanned pickle file as this adapter's safetensors weights."""
        ...

    def prepare(self, model: nn.Module, train: Inputs, missing: MissingRule = "refuse") -> None:
        """One-time set-up from the training rows on a fresh start (normalisation, the fill of a missing value)."""
        ...

    def save(self, model: nn.Module, path: Path, meta: dict[str, str]) -> None:
        """Write the fine-tuned model as one safetensors file that `load` reads back."""
        ...

    def load(self, path: Path) -> nn.Module:
        """The model written by `save`; a file that is not one is `BadInputError`."""
        ...

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Per input, the axes that vary (e.g. ``{0: "batch", 1: "sequence"}``), for ONNX export."""
        ...

    def perturb(self, inputs: Inputs, scale: float, rng: np.random.Generator) -> Inputs:
        """A slightly corrupted copy of `inputs` at `scale`, for the robustness gate."""
        ...


def load_adapter(model: ModelConfig) -> ModelAdapter:
    """The adapter `model.adapter` names (a shipped name or ``pkg.module:Class``), built with `model`."""
    spec = SHIPPED.get(model.adapter, model.adapter)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise BadInputError(
            f"model.adapter {model.adapter!r}: expected one of {', '.join(SHIPPED)} or 'package.module:ClassName'"
        )
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise BadInputError(f"model.adapter {model.adapter!r} cannot be imported: {e}") from None
    if not isinstance(cls, type):
        raise BadInputError(f"model.adapter {model.adapter!r} is not a class")
    try:
        adapter = cls(model)
    except BadInputError:
        raise
    except Exception as e:  # a user's class may raise anything from its constructor
        raise BadInputError(
            f"model.adapter {model.adapter!r} cannot be built from the model section: "
            f"{type(e).__name__}: {' '.join(str(e).split())}"
        ) from None
    if not isinstance(adapter, ModelAdapter):
        raise BadInputError(f"model.adapter {model.adapter!r} does not implement the ModelAdapter protocol")
    return adapter


def n_rows(inputs: Mapping[str, np.ndarray]) -> int:
    """How many rows `inputs` holds."""
    return len(next(iter(inputs.values())))


def take(inputs: Mapping[str, np.ndarray], rows: slice | np.ndarray) -> Inputs:
    """The same rows of every input."""
    return {k: v[rows] for k, v in inputs.items()}


def as_tensors(
    adapter: ModelAdapter, inputs: Mapping[str, np.ndarray], device: torch.device
) -> list[torch.Tensor]:
    """The model's positional arguments for `inputs`, on `device`."""
    return [torch.from_numpy(np.ascontiguousarray(inputs[n])).to(device) for n in adapter.input_names]


@torch.no_grad()
def torch_logits(adapter: ModelAdapter, model: nn.Module, inputs: Inputs, batch: int = 256) -> np.ndarray:
    """The model's logits for `inputs`, computed in batches on the model's device, returned as a NumPy array."""
    model.eval()
    device = next(model.parameters()).device
    out = [
        model(*as_tensors(adapter, take(inputs, slice(i, i + batch)), device)).float().cpu().numpy()
        for i in range(0, n_rows(inputs), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, 2), np.float32)
