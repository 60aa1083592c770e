"""What a training run starts from: the champion's weights, a base checkpoint, or nothing.

A warm start loads the champion's verified weights, a base is checked for a safe format
before it is opened, and an adapter that can train without a base builds the network from
the data's shape (`ModelAdapter.from_scratch`), recorded by the digest of its architecture.
Whatever the start, the network must take the data's inputs and return one logit per class,
or training refuses before it begins (one line, not an ``IndexError`` several steps in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attestflow.adapters import ModelAdapter, take, torch_logits
from attestflow.config import FineTuneConfig, ModelConfig
from attestflow.dataset import Split
from attestflow.digests import Digest
from attestflow.errors import BadInputError
from attestflow.formats import PickleImport, require_safe_weights
from attestflow.records import WarmStart
from attestflow.workspace import Workspace


@dataclass(frozen=True)
class Start:
    """The network training starts from, and the digest of the weights (or architecture) it came from."""

    net: nn.Module
    base_digest: Digest
    imported: PickleImport | None = None
    """The explicitly allowed pickle import the base checkpoint came from, if any."""
    architecture: dict[str, Any] | None = None
    """The architecture spec of a network built from scratch; None when it was loaded."""
    trained_from: str = "base_checkpoint"
    """``base_checkpoint``, ``warm_start`` or ``scratch``."""


def starting_point(
    cfg: FineTuneConfig,
    model_cfg: ModelConfig,
    adapter: ModelAdapter,
    ws: Workspace,
    warm_start: WarmStart | None,
    train: Split,
    n_classes: int,
) -> Start:
    """The champion's weights for a warm start, else the base checkpoint (pickle only if allowed, scanned),
    else a network built from scratch; refused when it does not fit the data."""
    start = _load(cfg, model_cfg, adapter, ws, warm_start, train, n_classes)
    what = "the champion's model" if warm_start is not None else _described(cfg, start)
    require_fit(adapter, start.net, train, n_classes, what)
    return start


def _load(
    cfg: FineTuneConfig,
    model_cfg: ModelConfig,
    adapter: ModelAdapter,
    ws: Workspace,
    warm_start: WarmStart | None,
    train: Split,
    n_classes: int,
) -> Start:
    if warm_start is not None:
        return Start(adapter.load(warm_start.path), warm_start.digest, trained_from="warm_start")
    base = cfg.base_checkpoint or adapter.default_base()
    if base is None:
        torch.manual_seed(cfg.seed)  # the initial weights are an input of training like the base's
        scratch = adapter.from_scratch(train.inputs, n_classes)
        if scratch is None:
            raise BadInputError(
                f"fine_tune.base_checkpoint is not set and adapter {model_cfg.adapter!r} "
                "has no default base and does not train from scratch"
            )
        return Start(scratch.net, scratch.digest, architecture=scratch.architecture, trained_from="scratch")
    if not base.exists():
        raise BadInputError(f"base checkpoint not found: {base}")
    weights, imported = require_safe_weights(
        adapter.weights_file(base),
        allow_pickle_import=cfg.allow_pickle_import,
        convert_dir=ws.training / "imported",
        convert=adapter.convert_state_dict,
    )
    base_digest = adapter.base_digest(base)
    return Start(adapter.load_base(base, weights, n_classes), base_digest, imported)


def _described(cfg: FineTuneConfig, start: Start) -> str:
    if start.architecture is not None:
        return "the model built from scratch"
    return f"base checkpoint {cfg.base_checkpoint}" if cfg.base_checkpoint else "the adapter's default base"


def require_fit(adapter: ModelAdapter, net: nn.Module, train: Split, n_classes: int, what: str) -> None:
    """`net` takes one training row and returns `n_classes` logits; else `BadInputError` naming `what`."""
    try:
        width = torch_logits(adapter, net, take(train.inputs, slice(0, 1))).shape[1]
    except RuntimeError as e:  # torch's shape errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInputError(f"{what} does not take this data's inputs: {first}") from None
    if width != n_classes:
        raise BadInputError(
            f"{what} has {width} classes, the data has {n_classes}: the labels must be classes of the model"
        )
