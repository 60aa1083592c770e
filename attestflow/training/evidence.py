"""A training run's logged weights are evidence: written once, never overwritten.

Once a run has logged its final weights (the ``checkpoint_sha256`` tag and the checkpoint
artifact), the provenance of the release that used them and any later warm start from that
release rely on those exact bytes. safetensors does not write its metadata in a fixed order,
so the same weights saved twice differ in bytes: a re-run that ends with the same weights
keeps (or restores from the run) the file already logged instead of saving a new one, and one
that ends with other weights is refused.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attestflow.digests import file_digest
from attestflow.errors import GateFailedError
from attestflow.training.checkpoints import CHECKPOINT_ARTIFACT

LOGGED_TAG = "checkpoint_sha256"
"""The training run's tag naming the SHA-256 of the weights it logged."""


def logged_weights(mlflow: Any, run_id: str) -> str | None:
    """The SHA-256 of the final weights run `run_id` has logged, if it has."""
    tags: Mapping[str, str] = mlflow.get_run(run_id).data.tags
    return tags.get(LOGGED_TAG)


def download_weights(mlflow: Any, run_id: str, dest: Path) -> None:
    """Copy the weights logged by `run_id` to `dest`."""
    with tempfile.TemporaryDirectory(prefix="attestflow-weights-") as tmp:
        shutil.copyfile(mlflow.download_artifacts(run_id, CHECKPOINT_ARTIFACT, tmp), dest)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models hold the same tensors, bit for bit."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def save_final(
    adapter: Any,
    model: nn.Module,
    final: Path,
    meta: dict[str, str],
    logged: str | None,
    restore: Callable[[Path], None],
) -> None:
    """Write `model` to `final`, or, when the run already logged weights (`logged`), keep those bytes.

    The logged file is `final` itself when it is still there unchanged, else it is restored from
    the run; either way it must hold `model`'s weights, or the run's evidence would be contradicted.
    """
    if logged is None:
        adapter.save(model, final, meta)
        return
    if not (final.is_file() and file_digest(final).value == logged):
        try:
            restore(final)
        except Exception as e:  # an artifact store that lost the file: the evidence is gone
            raise GateFailedError([f"the weights logged as {logged[:12]} cannot be restored: {e}"]) from None
    if file_digest(final).value != logged or not same_weights(adapter.load(final), model):
        raise GateFailedError(
            [
                f"this training ended with other weights than the {logged[:12]} its run logged; refusing to overwrite them"
            ]
        )
