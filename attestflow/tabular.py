"""The tabular classifier of the bundled example, and its safetensors checkpoints.

Normalisation lives inside the model as buffers, so the exported ONNX takes raw feature
values and nothing about preprocessing can drift between training and serving.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from attestflow.errors import BadInputError


class TabularMLP(nn.Module):
    """A small MLP over standardised numeric features, with class logits out."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_features: int, hidden: tuple[int, ...] = (32, 16), n_classes: int = 2):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    def set_normalisation(self, x: torch.Tensor) -> None:
        """Take the feature means and standard deviations from training rows."""
        self.mean.copy_(x.mean(dim=0))
        self.std.copy_(x.std(dim=0).clamp_min(1e-6))


def save_checkpoint(model: TabularMLP, path: Path, extra: dict[str, str] | None = None) -> None:
    """Write the model's weights as safetensors, with its architecture in the metadata."""
    meta = {"arch": "TabularMLP", "hidden": json.dumps(list(model.hidden))}
    meta.update(extra or {})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta)


def load_checkpoint(path: Path) -> TabularMLP:
    """Build a `TabularMLP` from a safetensors checkpoint written by `save_checkpoint`."""
    from attestflow.formats import read_weights

    state, meta = read_weights(path, "TabularMLP")
    hidden = tuple(json.loads(meta["hidden"]))
    n_features = state["mean"].shape[0]
    n_classes = state[f"net.{2 * len(hidden)}.bias"].shape[0]
    model = TabularMLP(n_features, hidden, n_classes)
    model.load_state_dict(state)
    return model


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
