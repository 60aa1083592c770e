"""Adapter `tabular`: an MLP over numeric columns (`attestflow.tabular.TabularMLP`).

Its one input, ``features``, is the configured columns as float32; normalisation statistics
(and, with ``data.missing: median``, the fill of a missing value) are taken from the training
rows on a fresh start and travel inside the model. Without a base checkpoint the network is
built from the data's shape, ``model.options.hidden`` wide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from attestflow.adapters import Inputs, MissingRule, ScratchModel
from attestflow.config import DataConfig, ModelConfig
from attestflow.digests import Digest, file_digest
from attestflow.errors import BadInputError
from attestflow.tabular import ARCH, TabularMLP, checkpoint_from_state_dict, load_checkpoint, save_checkpoint

INPUT_NAME = "features"


class TabularOptions(BaseModel):
    """``model.options`` of the tabular adapter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: list[Annotated[int, Field(ge=1, le=4096)]] = Field([32, 16], max_length=8)
    """Widths of the hidden layers of a model trained from scratch (a base brings its own)."""


class TabularAdapter:
    """Numeric columns in, class logits out."""

    input_names = (INPUT_NAME,)

    def __init__(self, model: ModelConfig) -> None:
        try:
            self.options = TabularOptions.model_validate(model.options)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            if first["type"] == "extra_forbidden":
                known = ", ".join(TabularOptions.model_fields)
                raise BadInputError(
                    f"model.options.{where}: the tabular adapter takes only {known}"
                ) from None
            raise BadInputError(f"model.options.{where}: {first['msg']}") from None

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

    def from_scratch(self, train: Inputs, n_classes: int) -> ScratchModel:
        n_features = int(train[INPUT_NAME].shape[1])
        hidden = tuple(self.options.hidden)
        spec = {"arch": ARCH, "n_features": n_features, "hidden": list(hidden), "n_classes": n_classes}
        return ScratchModel(TabularMLP(n_features, hidden, n_classes), spec)

    def weights_file(self, base: Path) -> Path:
        return base

    def base_digest(self, base: Path) -> Digest:
        return file_digest(base)

    def load_base(self, base: Path, weights: Path, n_classes: int) -> nn.Module:
        return load_checkpoint(weights)

    def convert_state_dict(self, state: dict[str, Any], out: Path) -> None:
        checkpoint_from_state_dict(state, out)

    def prepare(self, model: nn.Module, train: Inputs, missing: MissingRule = "refuse") -> None:
        x = train[INPUT_NAME]
        if not isinstance(model, TabularMLP):
            raise TypeError(f"the tabular adapter builds TabularMLP models, not {type(model).__name__}")
        if x.shape[1] != model.mean.shape[0]:
            raise BadInputError(
                f"base checkpoint expects {model.mean.shape[0]} features, data.features has {x.shape[1]}"
            )
        rows = torch.from_numpy(x)
        model.set_normalisation(rows)
        if missing == "median":
            model.impute_median(rows)

    def save(self, model: nn.Module, path: Path, meta: dict[str, str]) -> None:
        if not isinstance(model, TabularMLP):
            raise TypeError(f"the tabular adapter builds TabularMLP models, not {type(model).__name__}")
        save_checkpoint(model, path, meta)

    def load(self, path: Path) -> nn.Module:
        return load_checkpoint(path)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {INPUT_NAME: {0: "batch"}}

    def perturb(self, inputs: Inputs, scale: float, rng: np.random.Generator) -> Inputs:
        """Gaussian noise at `scale` times each feature's standard deviation."""
        x = inputs[INPUT_NAME]
        noisy = x + rng.standard_normal(x.shape) * scale * np.nanstd(x, axis=0)
        return {INPUT_NAME: noisy.astype(np.float32)}
