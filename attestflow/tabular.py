"""The tabular classifier of the bundled example, and its safetensors checkpoints.

Normalisation lives inside the model as buffers, so the exported ONNX takes raw feature
values and nothing about preprocessing can drift between training and serving. So does the
replacement of a missing value (``data.missing: median``): a ``fill`` buffer of the training
rows' medians, applied by ``Where(IsNaN(x), fill, x)`` in the graph.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from attestflow.errors import BadInputError

ARCH = "TabularMLP"


class TabularMLP(nn.Module):
    """A small MLP over standardised numeric features, with class logits out."""

    mean: torch.Tensor
    std: torch.Tensor
    fill: torch.Tensor | None
    """Per feature, the value that replaces a missing one (NaN); None: a NaN goes through as NaN."""

    def __init__(self, n_features: int, hidden: tuple[int, ...] = (32, 16), n_classes: int = 2):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("fill", None)
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fill is not None:
            x = torch.where(torch.isnan(x), self.fill, x)
        return self.net((x - self.mean) / self.std)

    def set_normalisation(self, x: torch.Tensor) -> None:
        """Take the feature means and standard deviations from training rows, ignoring missing values."""
        if not bool(torch.isnan(x).any()):
            self.mean.copy_(x.mean(dim=0))
            self.std.copy_(x.std(dim=0).clamp_min(1e-6))
            return
        present = (~torch.isnan(x)).sum(dim=0)
        mean = torch.nanmean(x, dim=0)
        var = torch.nansum((x - mean) ** 2, dim=0) / (present - 1).clamp_min(1)
        self.mean.copy_(torch.nan_to_num(mean))
        self.std.copy_(torch.nan_to_num(var.sqrt(), nan=1.0).clamp_min(1e-6))

    def impute_median(self, x: torch.Tensor) -> None:
        """Replace a missing feature value by the median of the training rows `x` from now on."""
        self.fill = torch.nanmedian(x, dim=0).values.to(self.mean)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # A checkpoint of a model that imputes brings its fill values: this model imputes too.
        if self.fill is None and prefix + "fill" in state_dict:
            self.fill = torch.zeros_like(self.mean)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@dataclass(frozen=True)
class CheckpointShape:
    """What a `TabularMLP` checkpoint takes and returns, read from its safetensors header alone."""

    n_features: int
    n_classes: int
    hidden: tuple[int, ...]


def save_checkpoint(model: TabularMLP, path: Path, extra: dict[str, str] | None = None) -> None:
    """Write the model's weights as safetensors, with its architecture in the metadata."""
    meta = {"arch": ARCH, "hidden": json.dumps(list(model.hidden))}
    if model.fill is not None:
        meta["missing"] = "median"
    meta.update(extra or {})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta)


def load_checkpoint(path: Path) -> TabularMLP:
    """Build a `TabularMLP` from a safetensors checkpoint written by `save_checkpoint`."""
    from attestflow.formats import read_weights

    state, meta = read_weights(path, ARCH)
    hidden = tuple(json.loads(meta["hidden"]))
    n_features = state["mean"].shape[0]
    n_classes = state[f"net.{2 * len(hidden)}.bias"].shape[0]
    model = TabularMLP(n_features, hidden, n_classes)
    model.load_state_dict(state)
    return model


def checkpoint_shape(path: Path) -> CheckpointShape:
    """The input width, class count and hidden layers of a `TabularMLP` checkpoint, without loading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("arch") != ARCH:
                raise BadInputError(f"{path}: not a {ARCH} checkpoint (arch={meta.get('arch')!r})")
            hidden = tuple(int(h) for h in json.loads(meta["hidden"]))
            n_features = f.get_slice("mean").get_shape()[0]
            n_classes = f.get_slice(f"net.{2 * len(hidden)}.bias").get_shape()[0]
    except BadInputError:
        raise
    except Exception as e:  # safetensors raises several types for a bad file or a missing tensor
        raise BadInputError(f"{path} is not a readable {ARCH} checkpoint: {e}") from None
    return CheckpointShape(int(n_features), int(n_classes), hidden)


def checkpoint_from_state_dict(state: dict[str, torch.Tensor], out: Path) -> None:
    """Write a `TabularMLP` state dict (e.g. from an imported torch file) as a safetensors checkpoint."""
    n_linear = sum(1 for k in state if k.startswith("net.") and k.endswith(".weight"))
    if "mean" not in state or n_linear == 0:
        raise BadInputError(f"{out.name}: the imported weights are not a TabularMLP state dict")
    hidden = tuple(int(state[f"net.{2 * i}.weight"].shape[0]) for i in range(n_linear - 1))
    n_classes = int(state[f"net.{2 * (n_linear - 1)}.weight"].shape[0])
    model = TabularMLP(int(state["mean"].shape[0]), hidden, n_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise BadInputError(f"{out.name}: imported weights do not fit a TabularMLP: {e}") from None
    save_checkpoint(model, out, {"imported": "true"})
