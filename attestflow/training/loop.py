"""The training loop, shared by the release's fine-tuning, base models and test fixtures.

CUDA when present with bf16/fp16 autocast, pinned memory and non-blocking copies; data
loader workers; gradient accumulation; DDP when launched by ``torchrun`` with several
processes (rank 0 writes checkpoints). Each epoch's row order is derived from (seed, epoch),
and a resumed epoch skips the batches already trained, so where training resumed does not
change the result.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attestflow.adapters import ModelAdapter, torch_logits
from attestflow.config import FineTuneConfig
from attestflow.dataset import Split
from attestflow.errors import BadInputError
from attestflow.progress import TrainingProgress
from attestflow.training.checkpoints import prune_mid_epoch, training_state, write_training_state
from attestflow.training.writer import BackgroundWriter


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
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes checkpoints and talks to MLflow."""
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


@dataclass(frozen=True)
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
    """Called with the step number after every optimizer step, once the checkpoints due so far are
    on disk (tests use it to stop a run at a known point)."""
    writer: BackgroundWriter | None = None
    """Where checkpoints are written while training goes on; None: written before training goes on."""

    def run_epoch(self, train_split: Split, epoch: int, first_batch: int) -> float:
        """Train `epoch` from batch `first_batch`; returns the mean loss over the batches trained."""
        self.model.train()
        dtype = autocast_dtype(self.device, self.cfg.amp)
        batches = self.schedule.batches(epoch)
        step = (epoch - 1) * self.schedule.steps_per_epoch + first_batch // self.schedule.accum
        losses: list[torch.Tensor] = []
        sizes: list[int] = []
        group: list[list[torch.Tensor]] = []
        last = len(batches) - 1
        for i, tensors in enumerate(
            _batches(self.adapter, train_split, batches, first_batch, self.cfg, self.ranks), first_batch
        ):
            group.append(tensors)
            if len(group) < self.schedule.accum and i < last:
                continue
            self._accumulate(group, dtype, losses, sizes)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            group = []
            step += 1
            self._after_step(step, epoch, i == last, losses[-1])
        if not losses:
            return 0.0
        per_batch = torch.stack(losses).double().cpu()
        return float((per_batch * torch.tensor(sizes, dtype=torch.float64)).sum()) / sum(sizes)

    def _accumulate(
        self,
        group: list[list[torch.Tensor]],
        dtype: torch.dtype | None,
        losses: list[torch.Tensor],
        sizes: list[int],
    ) -> None:
        """Forward and backward over one optimizer step's batches, appending each one's loss and size."""
        ddp = isinstance(self.model, nn.parallel.DistributedDataParallel)
        on_cpu = self.device.type == "cpu"
        for j, (*inputs, y) in enumerate(group):
            if not on_cpu:
                inputs = [_to(t, self.device) for t in inputs]
                y = _to(y, self.device)
            ctx = self.model.no_sync() if ddp and j < len(group) - 1 else nullcontext()  # type: ignore[operator]
            amp: AbstractContextManager[object] = (
                torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()
            )
            with ctx, amp:
                loss = nn.functional.cross_entropy(self.model(*inputs), y)
                # Dividing by 1 changes no bit; skipping it saves an op forward and backward.
                (loss / len(group) if len(group) > 1 else loss).backward()
            # Kept on the device: reading each loss back would wait for the GPU every step.
            losses.append(loss.detach())
            sizes.append(len(y))

    def _after_step(self, step: int, epoch: int, at_epoch_end: bool, loss: torch.Tensor) -> None:
        """A mid-epoch checkpoint when one is due, progress now and then, and the step hook."""
        spe = self.schedule.steps_per_epoch
        if self.cfg.checkpoint_every and step % self.cfg.checkpoint_every == 0 and not at_epoch_end:
            self.checkpoint(step)
        progress = self.progress
        if progress is not None and progress.enabled and (step % max(1, spe // 20) == 0 or at_epoch_end):
            progress.update(
                step, epoch, {"train_loss": float(loss)}
            )  # float() waits for a GPU: only when shown
        if self.step_hook is not None:
            if self.writer is not None:
                self.writer.wait()
            self.step_hook(step)

    def checkpoint(self, step: int) -> None:
        """Rank 0 copies the state after `step` and has it written, then older mid-epoch ones pruned; ranks wait for the copy."""
        if self.ranks.is_main:
            state = training_state(step, self.raw, self.opt, self.run_id)
            folder, per_epoch = self.folder, self.schedule.steps_per_epoch

            def write() -> None:
                write_training_state(folder, state)
                prune_mid_epoch(folder, step, per_epoch)  # only once the newer one is durable

            if self.writer is not None:
                big = state.nbytes >= self.cfg.background_checkpoint_mb * 2**20
                self.writer.submit(write, background=big)
            else:
                write()
        self.ranks.barrier()


def evaluate(adapter: ModelAdapter, model: nn.Module, split: Split) -> dict[str, float]:
    """Loss and accuracy of `model` on a split, in torch."""
    with torch.inference_mode():
        logits = torch.from_numpy(torch_logits(adapter, model, split.inputs))
    y = torch.from_numpy(split.y)
    loss = nn.functional.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    return {"loss": loss, "accuracy": acc}


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of training so far: allocated on the GPU, or the process's resident peak on the CPU."""
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


def train_in_memory(
    adapter: ModelAdapter, model: nn.Module, train_split: Split, cfg: FineTuneConfig
) -> nn.Module:
    """`cfg.epochs` of the same training on the CPU, without checkpoints or tracking (base models, test fixtures)."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = Schedule(len(train_split), cfg.batch_size, cfg.grad_accum_steps, cfg.seed)
    no_checkpoints = cfg.model_copy(update={"checkpoint_every": 0})
    cpu = torch.device("cpu")
    trainer = Trainer(adapter, model, model, opt, no_checkpoints, schedule, cpu, Path("."), "", Ranks())
    with cpu_threads_for(model, cfg, cpu):
        for epoch in range(1, cfg.epochs + 1):
            trainer.run_epoch(train_split, epoch, 0)
    return model.eval()
