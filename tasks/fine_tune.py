"""Stage `fine_tune`: fine-tune the base model on the snapshot, resumably, on a GPU or the CPU.

Everything model-specific goes through the configured adapter (`attestflow.adapters`). The
loop itself: CUDA when present with bf16/fp16 autocast, pinned memory and non-blocking
copies; data loader workers; gradient accumulation; optional ``torch.compile``; DDP when
launched by ``torchrun`` with several processes (rank 0 writes checkpoints and logs).

Fault tolerance: every ``checkpoint_every`` optimizer steps and at the end of every epoch,
a safetensors checkpoint (weights, optimizer and RNG state, no pickle) is written then
renamed, with a sidecar holding its SHA-256. A retried task, a re-run after the process was
killed, or a Prefect retry finds the checkpoint folder by the digest of the training inputs
and resumes after the last checkpoint whose digest still matches. Each epoch's row order is
derived from (seed, epoch), and a resumed epoch skips the batches already trained, so where
training resumed does not change the result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prefect import task
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from attestflow.adapters import ModelAdapter, load_adapter, torch_logits
from attestflow.config import DataConfig, FineTuneConfig, ModelConfig, ReleaseConfig
from attestflow.dataset import Split, load_splits
from attestflow.digests import Digest, file_digest, json_digest
from attestflow.errors import BadInputError
from attestflow.formats import require_safe_weights
from attestflow.progress import TrainingProgress
from attestflow.records import TrainingRecord, WarmStart
from attestflow.tracking import client, ensure_experiment
from attestflow.workspace import Workspace

_STAGE_KEYS = {"retries", "retry_delay_s", "timeout_s"}
_SPEED_KEYS = {"epochs", "device", "num_workers", "checkpoint_every", "processes"}
"""Settings that change how fast training runs, or how long, but not the model at a given step."""
CHECKPOINT_ARTIFACT = "checkpoint/model.safetensors"
"""Where the final weights are logged in the training's MLflow run (for warm starts)."""


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    """CUDA when present (or forced), else the CPU; forcing CUDA without one is bad input."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise BadInputError("fine_tune.device is 'cuda' but no CUDA device is available")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype for mixed precision, or None for full fp32."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def training_key(
    cfg: FineTuneConfig, model: ModelConfig, data: DataConfig, data_md5: str, base: Digest
) -> str:
    """Digest of everything training depends on; names its checkpoint folder."""
    # Left out: the epoch count (epoch k's state does not depend on how many follow it, so a
    # longer run resumes from a shorter one), and what only changes speed (device, workers).
    settings = cfg.model_dump(mode="json", exclude=_STAGE_KEYS | _SPEED_KEYS | {"base_checkpoint"})
    spec = {
        "fine_tune": settings,
        "model": model.model_dump(mode="json"),
        "data": data.model_dump(mode="json"),
        "data_md5": data_md5,
        "base": base.value,
    }
    return json_digest(spec).value[:20]


@dataclass(frozen=True)
class Schedule:
    """How rows become batches and optimizer steps, the same on every run with the same settings."""

    rows: int
    batch_size: int
    accum: int
    seed: int

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.batches_per_epoch / self.accum)

    def position(self, step: int) -> tuple[int, int]:
        """(epoch to run next, index of its first untrained batch) after `step` optimizer steps."""
        return step // self.steps_per_epoch + 1, (step % self.steps_per_epoch) * self.accum

    def batches(self, epoch: int) -> list[np.ndarray]:
        """Row indices of each batch of `epoch`, in an order fixed by (seed, epoch)."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.rows)
        return [order[i : i + self.batch_size] for i in range(0, self.rows, self.batch_size)]


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint after `step` optimizer steps."""

    step: int
    path: Path
    sha256: str


def _ckpt_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:08d}.safetensors"


def _rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = state
    return out


def save_training_state(
    folder: Path, step: int, model: nn.Module, opt: torch.optim.Optimizer, run_id: str
) -> Checkpoint:
    """Write weights, optimizer and RNG state after `step` atomically, then its digest sidecar."""
    tensors: dict[str, torch.Tensor] = {
        f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
    }
    osd = opt.state_dict()
    for pid, state in osd["state"].items():
        for name, value in state.items():
            tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors.update(_rng_tensors())
    meta = {"step": str(step), "param_groups": json.dumps(osd["param_groups"]), "run_id": run_id}
    path = _ckpt_path(folder, step)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    digest = file_digest(path).value
    side = path.with_suffix(".json")
    side_tmp = side.with_name(side.name + ".partial")
    side_tmp.write_text(json.dumps({"step": step, "sha256": digest}))
    side_tmp.replace(side)
    return Checkpoint(step, path, digest)


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


@dataclass(frozen=True)
class Ranks:
    """This process's place in a `torchrun` launch (rank 0 of 1 when not launched by it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        return cls(
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


class _Batches(torch.utils.data.Dataset[list[torch.Tensor]]):
    """Batch i of an epoch as tensors (this rank's share of its rows), for a DataLoader's workers."""

    def __init__(self, adapter: ModelAdapter, split: Split, batches: list[np.ndarray], ranks: Ranks) -> None:
        self.inputs = [split.inputs[n] for n in adapter.input_names]
        axes = adapter.dynamic_axes()
        self.sequences = [i for i, n in enumerate(adapter.input_names) if 1 in axes.get(n, {})]
        self.y = split.y
        self.batches = [b[ranks.rank :: ranks.world] for b in batches]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        idx = self.batches[i]
        arrays = [a[idx] for a in self.inputs]
        if self.sequences:
            # The split is padded to its longest row; a batch needs only its own longest. Trailing
            # columns that are zero (padding) in every sequence input of every row are cut.
            used = np.zeros(arrays[self.sequences[0]].shape[1], dtype=bool)
            for k in self.sequences:
                used |= (arrays[k] != 0).any(axis=0)
            width = int(np.flatnonzero(used)[-1]) + 1 if used.any() else 1
            arrays = [a[:, :width] if k in self.sequences else a for k, a in enumerate(arrays)]
        return [torch.from_numpy(np.ascontiguousarray(a)) for a in (*arrays, self.y[idx])]


def _batches(
    adapter: ModelAdapter,
    split: Split,
    batches: list[np.ndarray],
    first: int,
    cfg: FineTuneConfig,
    ranks: Ranks,
) -> Iterator[list[torch.Tensor]]:
    data = _Batches(adapter, split, batches, ranks)
    if cfg.num_workers == 0:
        return (data[i] for i in range(first, len(data)))
    return iter(
        torch.utils.data.DataLoader(
            data,
            batch_size=None,
            sampler=range(first, len(data)),
            num_workers=cfg.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )
    )


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` on `device`; host memory is pinned first so the copy to a GPU can overlap compute."""
    if device.type == "cuda" and not t.is_pinned():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


@dataclass
class Trainer:
    """One training run: the model, its optimizer, where checkpoints go, and what is logged."""

    adapter: ModelAdapter
    model: nn.Module
    """The model as it runs (compiled and/or wrapped in DDP)."""
    raw: nn.Module
    """The model whose weights are saved."""
    opt: torch.optim.Optimizer
    cfg: FineTuneConfig
    schedule: Schedule
    device: torch.device
    folder: Path
    run_id: str
    ranks: Ranks
    progress: TrainingProgress | None = None
    step_hook: Callable[[int], None] | None = None
    """Called with the step number after every optimizer step (tests use it to stop a run)."""

    def run_epoch(self, train: Split, epoch: int, first_batch: int) -> float:
        """Train `epoch` from batch `first_batch`; returns the mean loss over the batches trained."""
        self.model.train()
        dtype = autocast_dtype(self.device, self.cfg.amp)
        batches = self.schedule.batches(epoch)
        spe = self.schedule.steps_per_epoch
        step = (epoch - 1) * spe + first_batch // self.schedule.accum
        losses: list[torch.Tensor] = []
        sizes: list[int] = []
        group: list[list[torch.Tensor]] = []
        last = len(batches) - 1
        for i, tensors in enumerate(
            _batches(self.adapter, train, batches, first_batch, self.cfg, self.ranks), first_batch
        ):
            group.append(tensors)
            if len(group) < self.schedule.accum and i < last:
                continue
            for j, (*inputs, y) in enumerate(group):
                inputs = [_to(t, self.device) for t in inputs]
                y = _to(y, self.device)
                sync = j == len(group) - 1 or not isinstance(self.model, nn.parallel.DistributedDataParallel)
                ctx = nullcontext() if sync else self.model.no_sync()  # type: ignore[operator]
                amp: AbstractContextManager[object] = (
                    torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()
                )
                with ctx, amp:
                    loss = nn.functional.cross_entropy(self.model(*inputs), y)
                    (loss / len(group)).backward()
                # Kept on the device: reading each loss back would wait for the GPU every step.
                losses.append(loss.detach())
                sizes.append(len(y))
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            group = []
            step += 1
            at_epoch_end = i == last
            if self.cfg.checkpoint_every and step % self.cfg.checkpoint_every == 0 and not at_epoch_end:
                self.checkpoint(step)
            if self.progress is not None and (step % max(1, spe // 20) == 0 or at_epoch_end):
                self.progress.update(step, epoch, {"train_loss": float(losses[-1])})
            if self.step_hook is not None:
                self.step_hook(step)
        if not losses:
            return 0.0
        per_batch = torch.stack(losses).double().cpu()
        return float((per_batch * torch.tensor(sizes, dtype=torch.float64)).sum()) / sum(sizes)

    def checkpoint(self, step: int) -> Checkpoint | None:
        """Rank 0 writes the state after `step` and prunes older mid-epoch ones; every rank waits for it."""
        ckpt = None
        if self.ranks.main:
            ckpt = save_training_state(self.folder, step, self.raw, self.opt, self.run_id)
            prune_mid_epoch(self.folder, step, self.schedule.steps_per_epoch)
        self.ranks.barrier()
        return ckpt


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


def evaluate(adapter: ModelAdapter, model: nn.Module, split: Split) -> dict[str, float]:
    """Loss and accuracy of `model` on a split, in torch."""
    logits = torch.from_numpy(torch_logits(adapter, model, split.inputs))
    y = torch.from_numpy(split.y)
    loss = nn.functional.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    return {"loss": loss, "accuracy": acc}


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in KiB on Linux: the process's peak resident memory, training included.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def cpu_threads_for(model: nn.Module, cfg: FineTuneConfig, device: torch.device) -> Iterator[None]:
    """One intra-op thread while training a model whose steps are too small to split."""
    # A step of under ~4M multiply-adds is too small to split across threads: each op's
    # fork/join costs more than it saves, and on a busy CPU OpenMP's waiting threads make
    # it ten times slower. Such runs use one intra-op thread (restored afterwards).
    work = cfg.batch_size * sum(p.numel() for p in model.parameters())
    threads = torch.get_num_threads()
    if device.type == "cpu" and work < 1 << 22:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_in_memory(adapter: ModelAdapter, model: nn.Module, train: Split, cfg: FineTuneConfig) -> nn.Module:
    """`cfg.epochs` of the same training on the CPU, without checkpoints or tracking (base models, test fixtures)."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = Schedule(len(train), cfg.batch_size, cfg.grad_accum_steps, cfg.seed)
    no_checkpoints = cfg.model_copy(update={"checkpoint_every": 0})
    cpu = torch.device("cpu")
    trainer = Trainer(adapter, model, model, opt, no_checkpoints, schedule, cpu, Path("."), "", Ranks())
    with cpu_threads_for(model, cfg, cpu):
        for epoch in range(1, cfg.epochs + 1):
            trainer.run_epoch(train, epoch, 0)
    return model.eval()


def fine_tune(
    cfg: FineTuneConfig,
    data: DataConfig,
    ws: Workspace,
    data_md5: str,
    tracking_uri: str,
    experiment: str,
    run_tags: dict[str, str] | None = None,
    *,
    model: ModelConfig | None = None,
    warm_start: WarmStart | None = None,
    model_name: str | None = None,
    step_hook: Callable[[int], None] | None = None,
) -> TrainingRecord:
    """Fine-tune the base model (or the champion's weights) on the dataset, resuming from the last good checkpoint."""
    model_cfg = model or ModelConfig()
    adapter = load_adapter(model_cfg)
    ranks = Ranks.from_env()
    train, test = load_splits(data, adapter)
    if len(train) == 0:
        raise BadInputError(f"{data.path}: no training rows")
    n_classes = max(2, int(max(train.y.max(), test.y.max(initial=0))) + 1)

    imported = None
    if warm_start is not None:
        base_digest = warm_start.digest
        net = adapter.load(warm_start.path)
    else:
        base = cfg.base_checkpoint or adapter.default_base()
        if base is None:
            raise BadInputError(
                f"fine_tune.base_checkpoint is not set and adapter {model_cfg.adapter!r} has no default"
            )
        if not base.exists():
            raise BadInputError(f"base checkpoint not found: {base}")
        weights, imported = require_safe_weights(
            adapter.weights_file(base),
            allow_pickle_import=cfg.allow_pickle_import,
            convert_dir=ws.training / "imported",
            convert=adapter.convert_state_dict,
        )
        base_digest = adapter.base_digest(base)
        net = adapter.load_base(base, weights, n_classes)
    key = training_key(cfg, model_cfg, data, data_md5, base_digest)
    folder = ws.training / key
    folder.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device, ranks.local_rank)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = Schedule(len(train), cfg.batch_size, cfg.grad_accum_steps, cfg.seed)
    total_steps = cfg.epochs * schedule.steps_per_epoch
    # Only rank 0 talks to MLflow (several processes creating one SQLite store would collide).
    mlflow = client(tracking_uri) if ranks.main else None

    resume = last_good_checkpoint(folder, total_steps)
    if resume is not None:
        run_id = load_training_state(resume, net, opt)
        start_step = resume.step
    else:
        if warm_start is None:
            adapter.prepare(net, train.inputs)
        run_id = ""
        if mlflow is not None:
            exp_id = ensure_experiment(tracking_uri, experiment, ws)
            run = mlflow.create_run(exp_id, run_name=f"fine_tune-{key[:8]}", tags=run_tags or {})
            run_id = run.info.run_id
            params = cfg.model_dump(mode="json", exclude=_STAGE_KEYS)
            params.update(
                training_key=key,
                base_checkpoint_sha256=base_digest.value,
                data_md5=data_md5,
                adapter=model_cfg.adapter,
                adapter_options=json.dumps(model_cfg.options, sort_keys=True),
                warm_start=warm_start.model_uri if warm_start else "none",
            )
            if imported is not None:
                params.update(pickle_import_from=imported.source.name, pickle_import_scanner=imported.scanner)
            for k, v in params.items():
                mlflow.log_param(run_id, k, v)
        start_step = 0
    net.to(device)
    # Optimizer state loaded on the CPU must follow the parameters to the device.
    for st in opt.state.values():
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and k != "step":
                st[k] = v.to(device)

    running: nn.Module = net
    if ranks.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        running = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    if cfg.compile:
        running = torch.compile(running)  # type: ignore[assignment]
    progress = TrainingProgress(model_name or "model", total_steps) if ranks.main else None
    trainer = Trainer(
        adapter, running, net, opt, cfg, schedule, device, folder, run_id, ranks, progress, step_hook
    )

    precision = str(autocast_dtype(device, cfg.amp) or torch.float32).removeprefix("torch.")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    trained = 0
    metrics: dict[str, float] = {}
    with cpu_threads_for(net, cfg, device):
        first_epoch, first = schedule.position(start_step)
        for epoch in range(first_epoch, cfg.epochs + 1):
            train_loss = trainer.run_epoch(train, epoch, first)
            trained += len(train) - min(first * cfg.batch_size, len(train))
            first = 0
            trainer.checkpoint(epoch * schedule.steps_per_epoch)
            if mlflow is not None:
                held = evaluate(adapter, net, test)
                metrics = {
                    "train_loss": train_loss,
                    "val_loss": held["loss"],
                    "val_accuracy": held["accuracy"],
                }
                mlflow.log_batch(run_id, metrics=[_metric(k, v, epoch) for k, v in metrics.items()])
    elapsed = time.perf_counter() - started
    if not metrics:
        held = evaluate(adapter, net, test)
        metrics = {"val_loss": held["loss"], "val_accuracy": held["accuracy"]}
    samples_per_s = trained / elapsed if trained and elapsed > 0 else 0.0
    peak_mb = _peak_memory_mb(device)

    final = folder / "model.safetensors"
    epoch_digests = [
        json.loads(_ckpt_path(folder, e * schedule.steps_per_epoch).with_suffix(".json").read_text())[
            "sha256"
        ]
        for e in range(1, cfg.epochs + 1)
    ]
    if ranks.main:
        adapter.save(net.cpu(), final, {"training_key": key})
    ranks.barrier()
    digest = file_digest(final)
    if mlflow is not None:
        summary = {
            "device": device.type,
            "precision": precision,
            "processes": str(ranks.world),
            "resumed_from_step": str(start_step),
            "checkpoint_sha256": digest.value,
        }
        speed = []
        if trained:  # a re-run that found training complete measured nothing: keep the real figures
            summary.update(samples_per_s=f"{samples_per_s:.1f}", peak_memory_mb=f"{peak_mb:.0f}")
            speed = [_metric("samples_per_s", samples_per_s, 0), _metric("peak_memory_mb", peak_mb, 0)]
        mlflow.log_batch(run_id, metrics=speed, tags=[_tag(k, v) for k, v in summary.items()])
        mlflow.log_artifact(run_id, str(final), artifact_path=CHECKPOINT_ARTIFACT.rsplit("/", 1)[0])
        if progress is not None:
            progress.finish(_history(mlflow, run_id, schedule.steps_per_epoch))
    return TrainingRecord(
        checkpoint_path=final,
        checkpoint_digest=digest,
        base_checkpoint_digest=base_digest,
        epoch_checkpoints=epoch_digests,
        device=device.type,
        precision=precision,
        epochs=cfg.epochs,
        resumed_from_epoch=start_step // schedule.steps_per_epoch,
        resumed_from_step=start_step,
        mlflow_run_id=run_id,
        metrics=metrics,
        samples_per_s=samples_per_s,
        peak_memory_mb=peak_mb,
        training_key=key,
        adapter=model_cfg.adapter,
        processes=ranks.world,
        warm_start=warm_start,
    )


def _metric(key: str, value: float, step: int) -> Any:
    from mlflow.entities import Metric

    return Metric(key, value, int(time.time() * 1000), step)


def _tag(key: str, value: str) -> Any:
    from mlflow.entities import RunTag

    return RunTag(key, value)


def _history(mlflow: Any, run_id: str, steps_per_epoch: int) -> list[dict[str, float]]:
    """Per-epoch metrics of the run from MLflow (so a resumed run's curves start at epoch 1)."""
    points: dict[int, dict[str, float]] = {}
    for name in ("train_loss", "val_loss", "val_accuracy"):
        for m in mlflow.get_metric_history(run_id, name):
            point = {"epoch": float(m.step), "step": float(m.step * steps_per_epoch)}
            points.setdefault(m.step, point)[name] = m.value
    return [points[k] for k in sorted(points)]


def train(
    cfg: ReleaseConfig,
    ws: Workspace,
    data_md5: str,
    tracking_uri: str,
    run_tags: dict[str, str],
    out_dir: Path,
    warm_start: WarmStart | None = None,
) -> TrainingRecord:
    """The release's training: in this process, or under ``torchrun`` when ``fine_tune.processes`` > 1."""
    if cfg.fine_tune.processes == 1:
        return fine_tune(
            cfg.fine_tune,
            cfg.data,
            ws,
            data_md5,
            tracking_uri,
            cfg.register.experiment,
            run_tags,
            model=cfg.model,
            warm_start=warm_start,
            model_name=cfg.model_name,
        )
    return launch(cfg, data_md5, run_tags, out_dir, warm_start)


def launch(
    cfg: ReleaseConfig, data_md5: str, run_tags: dict[str, str], out_dir: Path, warm_start: WarmStart | None
) -> TrainingRecord:
    """Run `main` under ``torchrun --standalone`` with one process per GPU; rank 0's record comes back."""
    from attestflow.records import to_jsonable, write_json

    config = write_json(out_dir / "fine_tune.config.json", cfg.model_dump(mode="json"))
    record = out_dir / "fine_tune.record.json"
    record.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={cfg.fine_tune.processes}",
        "-m",
        "tasks.fine_tune",
        f"--config={config}",
        f"--data-md5={data_md5}",
        f"--out={record}",
        f"--tags={json.dumps(run_tags)}",
    ]
    if warm_start is not None:
        cmd.append(f"--warm-start={json.dumps(to_jsonable(warm_start))}")
    done = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0 or not record.is_file():
        bad_input = re.search(r"^(?:\[rank\d+\]:\s*)?error: (.+)$", done.stderr, re.MULTILINE)
        if bad_input:
            raise BadInputError(bad_input.group(1))
        errors = [line for line in done.stderr.splitlines() if "Error" in line] or ["no error message"]
        raise RuntimeError(f"torchrun exited with {done.returncode}: {errors[-1].strip()}")
    return TrainingRecord.from_json(json.loads(record.read_text()))


fine_tune_task = task(name="fine_tune")(train)


def main(argv: list[str] | None = None) -> int:
    """Train from a release config outside Prefect: ``python -m tasks.fine_tune`` or under ``torchrun``.

    Writes the TrainingRecord as JSON to ``--out`` (rank 0). Used by the flow to launch
    several processes, and by anyone who wants the training stage alone.
    """
    from attestflow.config import load_config
    from attestflow.records import write_json
    from attestflow.tracking import tracking_uri

    parser = argparse.ArgumentParser(prog="python -m tasks.fine_tune", description=main.__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--data-md5", help="DVC md5 of the data (default: md5 of the data file's bytes)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tags", default="{}", help="MLflow run tags as JSON")
    parser.add_argument("--warm-start", help="a WarmStart record as JSON")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    ws = Workspace.at(cfg.workspace)
    ws.activate()
    md5 = args.data_md5 or file_digest(cfg.data.path, "md5").value
    ranks = Ranks.from_env()
    if ranks.world > 1:
        backend = "nccl" if torch.cuda.is_available() and cfg.fine_tune.device != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(ranks.local_rank)
    warm = WarmStart.from_json(json.loads(args.warm_start)) if args.warm_start else None
    try:
        record = fine_tune(
            cfg.fine_tune,
            cfg.data,
            ws,
            md5,
            tracking_uri(cfg.register.tracking_uri, ws),
            cfg.register.experiment,
            json.loads(args.tags),
            model=cfg.model,
            warm_start=warm,
            model_name=cfg.model_name,
        )
        if ranks.main:
            write_json(args.out, record)
    except BadInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if ranks.world > 1:
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
