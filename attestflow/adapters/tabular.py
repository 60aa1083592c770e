"""Adapter `tabular`: the example's MLP over numeric columns (`attestflow.tabular.TabularMLP`).

Its one input, ``features``, is the configured columns as float32; normalisation statistics
are taken from the training rows on a fresh start and travel inside the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from attestflow.adapters import Inputs
from attestflow.config import DataConfig, ModelConfig
from attestflow.digests import Digest, file_digest
from attestflow.errors import BadInputError
from attestflow.tabular import TabularMLP, checkpoint_from_state_dict, load_checkpoint, save_checkpoint

INPUT_NAME = "features"


class TabularAdapter:
    """Numeric columns in, class logits out."""

    input_names = (INPUT_NAME,)

    def __init__(self, model: ModelConfig) -> None:
        if model.options:
            raise BadInputError(f"model.options: the tabular adapter takes none, got {sorted(model.options)}")

    def encode(self, df: pd.DataFrame, data: DataConfig) -> Inputs:
        missing = [c for c in data.features if c not in df.columns]
        if missing:
            raise BadInputError(f"data is missing column(s): {', '.join(missing)}")
        try:
            x = df[data.features].to_numpy(dtype=np.float32, copy=True)
        except (TypeError, ValueError) as e:
            raise BadInputError(f"data.features must be numeric columns: {e}") from None
        return {INPUT_NAME: x}

    def default_base(self) -> Path | None:
        return None

    def weights_file(self, base: Path) -> Path:
        return base

    def base_digest(self, base: Path) -> Digest:
        return file_digest(base)

    def load_base(self, base: Path, weights: Path, n_classes: int) -> nn.Module:
        return load_checkpoint(weights)

    def convert_state_dict(self, state: dict[str, Any], out: Path) -> None:
        checkpoint_from_state_dict(state, out)

    def prepare(self, model: nn.Module, train: Inputs) -> None:
        x = train[INPUT_NAME]
        assert isinstance(model, TabularMLP)
        if x.shape[1] != model.mean.shape[0]:
            raise BadInputError(
                f"base checkpoint expects {model.mean.shape[0]} features, data.features has {x.shape[1]}"
            )
        model.set_normalisation(torch.from_numpy(x))

    def save(self, model: nn.Module, path: Path, meta: dict[str, str]) -> None:
        assert isinstance(model, TabularMLP)
        save_checkpoint(model, path, meta)

    def load(self, path: Path) -> nn.Module:
        return load_checkpoint(path)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {INPUT_NAME: {0: "batch"}}

    def perturb(self, inputs: Inputs, scale: float, rng: np.random.Generator) -> Inputs:
        """Gaussian noise at `scale` times each feature's standard deviation."""
        x = inputs[INPUT_NAME]
        noisy = x + rng.standard_normal(x.shape) * scale * x.std(axis=0)
        return {INPUT_NAME: noisy.astype(np.float32)}
