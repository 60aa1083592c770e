"""Stage `fine_tune`: fine-tune the base checkpoint on the snapshot, resumably.

Every epoch writes a safetensors checkpoint (weights, optimizer state and RNG state, no
pickle) by write-then-rename, with a sidecar holding its SHA-256. A retried task or a re-run
with the same inputs finds the checkpoint folder by the digest of those inputs and resumes
after the last checkpoint whose digest still matches. The shuffle order of each epoch is
derived from (seed, epoch), so where training resumed does not change the result.
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from prefect import task
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from attestflow.config import DataConfig, FineTuneConfig
from attestflow.dataset import Split, load_splits
from attestflow.digests import Digest, file_digest, json_digest
from attestflow.errors import BadInputError
from attestflow.formats import require_safe_weights
from attestflow.records import TrainingRecord
from attestflow.tabular import checkpoint_from_state_dict, load_checkpoint, save_checkpoint
from attestflow.tracking import client, ensure_experiment
from attestflow.workspace import Workspace

_STAGE_KEYS = {"retries", "retry_delay_s", "timeout_s"}


def pick_device(choice: str) -> torch.device:
    """CUDA when present (or forced), else the CPU; forcing CUDA without one is bad input."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise BadInputError("fine_tune.device is 'cuda' but no CUDA device is available")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype for mixed precision, or None for full fp32."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def training_key(cfg: FineTuneConfig, data: DataConfig, data_md5: str, base: Digest) -> str:
    """Digest of everything training depends on; names its checkpoint folder."""
    # The epoch count is left out: epoch k's state does not depend on how many follow it, so a
    # longer run resumes from a shorter one. The device is left out: it changes speed, not the model.
    settings = cfg.model_dump(mode="json", exclude=_STAGE_KEYS | {"epochs", "device"})
    spec = {"fine_tune": settings, "data": data.model_dump(mode="json"), "data_md5": data_md5}
    spec["base"] = base.value
    return json_digest(spec).value[:20]


@dataclass(frozen=True)
class Checkpoint:
    """A verified per-epoch checkpoint."""

    epoch: int
    path: Path
    sha256: str


def _ckpt_path(folder: Path, epoch: int) -> Path:
    return folder / f"epoch-{epoch:04d}.safetensors"


def save_training_state(
    folder: Path, epoch: int, model: nn.Module, opt: torch.optim.Optimizer, run_id: str
) -> Checkpoint:
    """Write weights, optimizer and RNG state for `epoch` atomically, then its digest sidecar."""
    tensors: dict[str, torch.Tensor] = {
        f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
    }
    osd = opt.state_dict()
    for pid, state in osd["state"].items():
        for name, value in state.items():
            tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"epoch": str(epoch), "param_groups": json.dumps(osd["param_groups"]), "run_id": run_id}
    path = _ckpt_path(folder, epoch)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    digest = file_digest(path).value
    side = path.with_suffix(".json")
    side_tmp = side.with_name(side.name + ".partial")
    side_tmp.write_text(json.dumps({"epoch": epoch, "sha256": digest}))
    side_tmp.replace(side)
    return Checkpoint(epoch, path, digest)


def last_good_checkpoint(folder: Path, max_epoch: int) -> Checkpoint | None:
    """The newest checkpoint up to `max_epoch` whose file matches its recorded digest.

    A checkpoint whose sidecar is missing (a crash between the two renames) or whose bytes no
    longer match (a damaged disk, a half-copied folder) is skipped, and the one before it used.
    """
    for side in sorted(folder.glob("epoch-*.json"), reverse=True):
        try:
            info = json.loads(side.read_text())
        except (OSError, ValueError):
            continue
        if int(info.get("epoch", 0)) > max_epoch:
            continue
        path = side.with_suffix(".safetensors")
        if path.is_file() and file_digest(path).value == info.get("sha256"):
            return Checkpoint(int(info["epoch"]), path, info["sha256"])
    return None


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
    return meta["run_id"]


def train_one_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    train: Split,
    epoch: int,
    cfg: FineTuneConfig,
    device: torch.device,
) -> float:
    """One pass over the training rows in an order fixed by (seed, epoch); returns mean loss."""
    model.train()
    order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train.y))
    x_all = torch.from_numpy(train.x)
    y_all = torch.from_numpy(train.y)
    dtype = autocast_dtype(device, cfg.amp)
    loss_fn = nn.CrossEntropyLoss()
    # A step of under ~4M multiply-adds is too small to split across threads: each op's
    # fork/join costs more than it saves, and on a busy CPU OpenMP's waiting threads make
    # it ten times slower. Such steps run on one intra-op thread (restored afterwards).
    threads = torch.get_num_threads()
    step_work = cfg.batch_size * sum(p.numel() for p in model.parameters())
    if device.type == "cpu" and step_work < 1 << 22:
        torch.set_num_threads(1)
    losses: list[torch.Tensor] = []
    sizes: list[int] = []
    try:
        for start in range(0, len(order), cfg.batch_size):
            idx = torch.from_numpy(order[start : start + cfg.batch_size])
            xb = x_all[idx].to(device, non_blocking=True)
            yb = y_all[idx].to(device, non_blocking=True)
            amp: AbstractContextManager[object] = (
                torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
            )
            with amp:
                loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # Kept on the device: reading each loss back would wait for the GPU every step.
            losses.append(loss.detach())
            sizes.append(len(idx))
    finally:
        torch.set_num_threads(threads)
    if not losses:
        return 0.0
    per_batch = torch.stack(losses).double().cpu()
    return float((per_batch * torch.tensor(sizes, dtype=torch.float64)).sum()) / sum(sizes)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, device: torch.device) -> dict[str, float]:
    """Loss and accuracy of `model` on a split, in torch."""
    model.eval()
    logits = model(torch.from_numpy(split.x).to(device)).float().cpu()
    y = torch.from_numpy(split.y)
    loss = nn.functional.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    return {"loss": loss, "accuracy": acc}


def fine_tune(
    cfg: FineTuneConfig,
    data: DataConfig,
    ws: Workspace,
    data_md5: str,
    tracking_uri: str,
    experiment: str,
    run_tags: dict[str, str] | None = None,
) -> TrainingRecord:
    """Fine-tune the base checkpoint on the dataset, resuming from the last good checkpoint."""
    base_path, imported = require_safe_weights(
        cfg.base_checkpoint,
        allow_pickle_import=cfg.allow_pickle_import,
        convert_dir=ws.training / "imported",
        convert=checkpoint_from_state_dict,
    )
    base_digest = file_digest(cfg.base_checkpoint)
    model = load_checkpoint(base_path)
    train, test = load_splits(data)
    if train.x.shape[1] != model.mean.shape[0]:
        raise BadInputError(
            f"base checkpoint expects {model.mean.shape[0]} features, data.features has {train.x.shape[1]}"
        )
    key = training_key(cfg, data, data_md5, base_digest)
    folder = ws.training / key
    folder.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    mlflow = client(tracking_uri)

    resume = last_good_checkpoint(folder, cfg.epochs)
    if resume is not None:
        run_id = load_training_state(resume, model, opt)
        start_epoch = resume.epoch
    else:
        model.set_normalisation(torch.from_numpy(train.x))
        exp_id = ensure_experiment(tracking_uri, experiment, ws)
        run = mlflow.create_run(exp_id, run_name=f"fine_tune-{key[:8]}", tags=run_tags or {})
        run_id = run.info.run_id
        params = cfg.model_dump(mode="json", exclude=_STAGE_KEYS)
        params.update(training_key=key, base_checkpoint_sha256=base_digest.value, data_md5=data_md5)
        if imported is not None:
            params.update(pickle_import_from=imported.source.name, pickle_import_scanner=imported.scanner)
        for k, v in params.items():
            mlflow.log_param(run_id, k, v)
        start_epoch = 0
    model.to(device)
    # Optimizer state loaded on the CPU must follow the parameters to the device.
    for st in opt.state.values():
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and k != "step":
                st[k] = v.to(device)

    precision = str(autocast_dtype(device, cfg.amp) or torch.float32).removeprefix("torch.")
    started = time.perf_counter()
    trained = 0
    metrics: dict[str, float] = {}
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        train_loss = train_one_epoch(model, opt, train, epoch, cfg, device)
        trained += len(train.y)
        held = evaluate(model, test, device)
        metrics = {"train_loss": train_loss, "val_loss": held["loss"], "val_accuracy": held["accuracy"]}
        for name, value in metrics.items():
            mlflow.log_metric(run_id, name, value, step=epoch)
        save_training_state(folder, epoch, model, opt, run_id)
    elapsed = time.perf_counter() - started
    if not metrics:
        held = evaluate(model, test, device)
        metrics = {"val_loss": held["loss"], "val_accuracy": held["accuracy"]}
    samples_per_s = trained / elapsed if trained and elapsed > 0 else 0.0

    final = folder / "model.safetensors"
    save_checkpoint(model.cpu(), final, {"training_key": key})
    digest = file_digest(final)
    epoch_digests = [
        json.loads(_ckpt_path(folder, e).with_suffix(".json").read_text())["sha256"]
        for e in range(1, cfg.epochs + 1)
    ]
    summary = {"device": device.type, "precision": precision, "samples_per_s": samples_per_s}
    summary["resumed_from_epoch"] = start_epoch
    for k, v in summary.items():
        mlflow.set_tag(run_id, k, str(v))
    mlflow.set_tag(run_id, "checkpoint_sha256", digest.value)
    return TrainingRecord(
        checkpoint_path=final,
        checkpoint_digest=digest,
        base_checkpoint_digest=base_digest,
        epoch_checkpoints=epoch_digests,
        device=device.type,
        precision=precision,
        epochs=cfg.epochs,
        resumed_from_epoch=start_epoch,
        mlflow_run_id=run_id,
        metrics=metrics,
        samples_per_s=samples_per_s,
        training_key=key,
    )


fine_tune_task = task(name="fine_tune")(fine_tune)
