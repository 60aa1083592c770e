"""Resumable training state on disk, each file verifiable by a digest recorded beside it.

Every ``checkpoint_every`` optimizer steps and at the end of every epoch, a safetensors
checkpoint (weights, optimizer and RNG state, no pickle) is written, hashed as it is written
(never read back), fsynced, then renamed, and only then a sidecar holding its SHA-256. A resumed run picks the newest checkpoint whose bytes still
match their sidecar, so a crash mid-write or a damaged file costs steps, never correctness.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from attestflow.digests import CHUNK, file_digest

CHECKPOINT_ARTIFACT = "checkpoint/model.safetensors"
"""Where the final weights are logged in the training's MLflow run (for warm starts)."""


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint after `step` optimizer steps."""

    step: int
    path: Path
    sha256: str


def checkpoint_path(folder: Path, step: int) -> Path:
    """Where the checkpoint after `step` optimizer steps is written in `folder`."""
    return folder / f"step-{step:08d}.safetensors"


def _rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = state
    return out


def _copy(value: object) -> torch.Tensor:
    """A CPU copy of `value` that later optimizer steps cannot change (``.cpu()`` of a CPU tensor is no copy)."""
    t = torch.as_tensor(value).detach()
    return (t.clone() if t.device.type == "cpu" else t.cpu()).contiguous()


@dataclass(frozen=True)
class TrainingState:
    """Weights, optimizer and RNG state after `step`, copied to the CPU: what a checkpoint holds."""

    step: int
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


def training_state(step: int, model: nn.Module, opt: torch.optim.Optimizer, run_id: str) -> TrainingState:
    """Copy the state after `step` optimizer steps, so it can be written while training goes on."""
    tensors = {f"model.{k}": _copy(v) for k, v in model.state_dict().items()}
    osd = opt.state_dict()
    for pid, state in osd["state"].items():
        for name, value in state.items():
            tensors[f"optim.{pid}.{name}"] = _copy(value)
    tensors.update(_rng_tensors())
    meta = {"step": str(step), "param_groups": json.dumps(osd["param_groups"]), "run_id": run_id}
    return TrainingState(step, tensors, meta)


class _HashingFile:
    """A file opened for writing that hashes every byte written to it, so nothing is read back."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("wb")
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        for i in range(0, len(view), CHUNK):
            chunk = view[i : i + CHUNK]
            self.sha256.update(chunk)
            self.file.write(chunk)

    def close_durably(self) -> str:
        """Flush, fsync and close; returns the SHA-256 of what was written."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return self.sha256.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_training_state(folder: Path, state: TrainingState) -> Checkpoint:
    """Write `state` hashed as it is written, fsync and rename it, then its digest sidecar the same way.

    The sidecar is what `last_good_checkpoint` looks for, and it appears only once the file it
    names is complete and durable: a kill at any moment leaves the previous checkpoint newest.
    """
    path = checkpoint_path(folder, state.step)
    tmp = path.with_name(path.name + ".partial")
    out = _HashingFile(tmp)
    try:
        out.write(save(state.tensors, metadata=state.metadata))
    finally:
        digest = out.close_durably()
    tmp.replace(path)
    side = path.with_suffix(".json")
    side_tmp = side.with_name(side.name + ".partial")
    sidecar = _HashingFile(side_tmp)
    sidecar.write(json.dumps({"step": state.step, "sha256": digest}).encode())
    sidecar.close_durably()
    side_tmp.replace(side)
    _fsync_dir(folder)
    return Checkpoint(state.step, path, digest)


def last_good_checkpoint(folder: Path, max_step: int) -> Checkpoint | None:
    """The newest checkpoint up to `max_step` whose file matches its recorded digest.

    A checkpoint whose sidecar is missing (a crash between the two renames) or whose bytes no
    longer match (a damaged disk, a half-copied folder) is skipped, and the one before it used.
    """
    for side in sorted(folder.glob("step-*.json"), reverse=True):
        try:
            info = json.loads(side.read_text())
            step = int(info["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if step > max_step:
            continue
        path = side.with_suffix(".safetensors")
        if path.is_file() and file_digest(path).value == info.get("sha256"):
            return Checkpoint(step, path, info["sha256"])
    return None


def seed_from_family(folder: Path, max_step: int) -> bool:
    """Copy into the empty `folder` the checkpoints up to `max_step` of the furthest run of its family.

    Folders are named ``<family>-e<epochs>`` (`training_key`): runs of one family differ only
    in their epoch count, and epoch k's state does not depend on how many follow it, so a
    longer run can start where another stopped. The files are copied, never shared, so each
    run's evidence stays its own. Returns whether anything was copied.
    """
    family = folder.name.rpartition("-e")[0]
    best: tuple[int, Path] | None = None
    for other in folder.parent.glob(f"{family}-e*"):
        ckpt = last_good_checkpoint(other, max_step) if other != folder and other.is_dir() else None
        if ckpt is not None and (best is None or ckpt.step > best[0]):
            best = (ckpt.step, other)
    if best is None:
        return False
    for side in best[1].glob("step-*.json"):
        if int(side.stem.removeprefix("step-")) <= best[0] and side.with_suffix(".safetensors").is_file():
            shutil.copy2(side.with_suffix(".safetensors"), folder)
            shutil.copy2(side, folder)  # the sidecar last: a half-copied checkpoint is skipped
    return True


def load_training_state(ckpt: Checkpoint, model: nn.Module, opt: torch.optim.Optimizer) -> str:
    """Restore model, optimizer and RNG state from `ckpt`; returns the MLflow run id it belongs to."""
    with safe_open(str(ckpt.path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return meta["run_id"]


def prune_mid_epoch(folder: Path, newest: int, steps_per_epoch: int) -> None:
    """Delete mid-epoch checkpoints older than step `newest`.

    Epoch-end checkpoints stay: their digests are part of the training record, and a longer
    run resumes from them. So does the newest checkpoint; if it is damaged, the previous epoch
    end is the fallback.
    """
    for side in folder.glob("step-*.json"):
        step = int(side.stem.removeprefix("step-"))
        if step < newest and step % steps_per_epoch:
            side.with_suffix(".safetensors").unlink(missing_ok=True)
            side.unlink(missing_ok=True)


def epoch_digests(folder: Path, epochs: int, steps_per_epoch: int) -> list[str]:
    """The recorded SHA-256 of each epoch-end checkpoint, epoch 1 first."""
    return [
        json.loads(checkpoint_path(folder, e * steps_per_epoch).with_suffix(".json").read_text())["sha256"]
        for e in range(1, epochs + 1)
    ]
