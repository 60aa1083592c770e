"""One resumable, tracked fine-tuning run: what the release's `fine_tune` stage does.

Everything model-specific goes through the configured adapter (`attestflow.adapters`). It
lives below the stage so that ``torchrun`` workers (`attestflow.training.launcher`) run it
without Prefect. A retried task, a re-run after the process was killed, or a Prefect retry
finds the checkpoint folder by the digest of the training inputs (`training_key`) and resumes
after the last checkpoint whose digest still matches (`attestflow.training.checkpoints`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attestflow.adapters import ModelAdapter, load_adapter
from attestflow.config import DataConfig, FineTuneConfig, ModelConfig
from attestflow.dataset import Split, classifier_classes, read_table, split_table
from attestflow.digests import Digest, file_digest, json_digest
from attestflow.errors import BadInputError
from attestflow.progress import TrainingProgress
from attestflow.records import TrainingRecord, WarmStart, training_start
from attestflow.tracking import client, ensure_experiment
from attestflow.training.checkpoints import (
    CHECKPOINT_ARTIFACT,
    epoch_digests,
    last_good_checkpoint,
    load_training_state,
    seed_from_family,
)
from attestflow.training.evidence import download_weights, logged_weights, save_final
from attestflow.training.loop import (
    Ranks,
    Schedule,
    Trainer,
    autocast_dtype,
    cpu_threads_for,
    evaluate,
    peak_memory_mb,
    pick_device,
)
from attestflow.training.start import Start, starting_point
from attestflow.training.writer import BackgroundWriter
from attestflow.workspace import Workspace

METRICS_EVERY_S = 10.0
"""Seconds between MLflow metric writes during training (the last epoch's are written at once)."""
_STAGE_KEYS = {"retries", "retry_delay_s", "timeout_s"}
_NOT_WEIGHTS = {"device", "num_workers", "checkpoint_every", "background_checkpoint_mb", "base_checkpoint"}
"""Settings that provably leave the weights as they are: batches are fixed by (seed, epoch) whichever
process makes them, a checkpoint (in whichever thread it is written) consumes no randomness, and the device counts as the one picked
(``auto`` and ``cuda`` on a GPU train alike) and the base by its digest, not as configured."""


def training_key(
    cfg: FineTuneConfig, model: ModelConfig, data: DataConfig, data_md5: str, base: Digest, device: str
) -> str:
    """``<family>-e<epochs>``: names the checkpoint folder and MLflow run of one set of training inputs.

    The family digest covers everything that changes the trained weights but the epoch count
    (`device` is the type actually trained on); with the epochs beside it, two trainings that
    end with different weights never share a folder or a run, and a longer run can still start
    from the epoch-end checkpoints of a shorter one of its family.
    """
    settings = cfg.model_dump(mode="json", exclude=_STAGE_KEYS | _NOT_WEIGHTS | {"epochs"})
    spec = {
        "fine_tune": settings,
        "device": device,
        "model": model.model_dump(mode="json"),
        "data": data.model_dump(mode="json"),
        "data_md5": data_md5,
        "base": base.value,
    }
    return f"{json_digest(spec).value[:20]}-e{cfg.epochs}"


@dataclass(frozen=True)
class _Outcome:
    """What the epochs trained in this process measured."""

    metrics: dict[str, float]
    trained: int
    """Rows trained in this process (0 when a re-run found training complete)."""
    elapsed_s: float
    peak_mb: float

    @property
    def samples_per_s(self) -> float:
        return self.trained / self.elapsed_s if self.trained and self.elapsed_s > 0 else 0.0


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
    """Train from the base model, the champion's weights or scratch on the dataset, resuming from the last good checkpoint."""
    model_cfg = model or ModelConfig()
    adapter = load_adapter(model_cfg)
    ranks = Ranks.from_env()
    table = read_table(data.path)
    train_split, test_split = split_table(table, data, adapter)
    if len(train_split) == 0:
        raise BadInputError(f"{data.path}: no training rows")
    classes = classifier_classes(table[data.label], data)
    start = starting_point(cfg, model_cfg, adapter, ws, warm_start, train_split, len(classes))
    device = pick_device(cfg.device, ranks.local_rank)
    key = training_key(cfg, model_cfg, data, data_md5, start.base_digest, device.type)
    folder = ws.training / key
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(start.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = Schedule(len(train_split), cfg.batch_size, cfg.grad_accum_steps, cfg.seed)
    # Only rank 0 talks to MLflow (several processes creating one SQLite store would collide).
    mlflow = client(tracking_uri) if ranks.is_main else None
    total = cfg.epochs * schedule.steps_per_epoch
    # A folder of its own but no checkpoint yet: start after a shorter run's epochs, copied in.
    seeded = ranks.is_main and last_good_checkpoint(folder, total) is None and seed_from_family(folder, total)
    ranks.barrier()
    resume = last_good_checkpoint(folder, total)
    run_id, start_step = "", 0
    if resume is not None:
        run_id, start_step = load_training_state(resume, start.net, opt), resume.step
    elif warm_start is None:
        adapter.prepare(start.net, train_split.inputs, data.missing)
    if (resume is None or seeded) and mlflow is not None:  # the shorter run's own run stays as it is
        params = _run_params(cfg, model_cfg, key, start, data_md5, warm_start)
        run_id = _open_run(
            mlflow, tracking_uri, experiment, ws, f"fine_tune-{key[:8]}", run_tags or {}, params
        )
    with BackgroundWriter() as writer:
        trainer = _trainer(
            adapter,
            start.net,
            opt,
            cfg,
            schedule,
            device,
            folder,
            run_id,
            ranks,
            model_name,
            step_hook,
            writer,
        )
        outcome = _train_epochs(trainer, writer, start_step, train_split, test_split, mlflow)
    meta = {"training_key": key, "classes": json.dumps(classes)}
    return _finish(trainer, key, meta, start, start_step, outcome, mlflow, model_cfg.adapter, warm_start)


def _run_params(
    cfg: FineTuneConfig,
    model_cfg: ModelConfig,
    key: str,
    start: Start,
    data_md5: str,
    warm_start: WarmStart | None,
) -> dict[str, Any]:
    """The MLflow params of a new run: the settings, and what it trains on and from."""
    params = cfg.model_dump(mode="json", exclude=_STAGE_KEYS)
    params.update(
        training_key=key,
        **training_start(start.base_digest, start.architecture),
        trained_from=start.trained_from,
        data_md5=data_md5,
        adapter=model_cfg.adapter,
        adapter_options=json.dumps(model_cfg.options, sort_keys=True),
        warm_start=warm_start.model_uri if warm_start else "none",
    )
    if start.architecture is not None:
        params.update(architecture=json.dumps(start.architecture, sort_keys=True))
    if start.imported is not None:
        params.update(
            pickle_import_from=start.imported.source.name, pickle_import_scanner=start.imported.scanner
        )
    return params


def _open_run(
    mlflow: Any,
    tracking_uri: str,
    experiment: str,
    ws: Workspace,
    run_name: str,
    run_tags: dict[str, str],
    params: dict[str, Any],
) -> str:
    """Create the training's MLflow run with its params; returns its id."""
    exp_id = ensure_experiment(tracking_uri, experiment, ws)
    run_id: str = mlflow.create_run(exp_id, run_name=run_name, tags=run_tags).info.run_id
    for k, v in params.items():
        mlflow.log_param(run_id, k, v)
    return run_id


def _trainer(
    adapter: ModelAdapter,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    cfg: FineTuneConfig,
    schedule: Schedule,
    device: torch.device,
    folder: Path,
    run_id: str,
    ranks: Ranks,
    model_name: str | None,
    step_hook: Callable[[int], None] | None,
    writer: BackgroundWriter,
) -> Trainer:
    """`net` and its optimizer state on `device`, wrapped in DDP and compiled as configured."""
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
    total_steps = cfg.epochs * schedule.steps_per_epoch
    progress = TrainingProgress(model_name or "model", total_steps) if ranks.is_main else None
    return Trainer(
        adapter, running, net, opt, cfg, schedule, device, folder, run_id, ranks, progress, step_hook, writer
    )


def _train_epochs(
    trainer: Trainer,
    writer: BackgroundWriter,
    start_step: int,
    train_split: Split,
    test_split: Split,
    mlflow: Any | None,
) -> _Outcome:
    """The epochs left after `start_step`, each checkpointed and (on rank 0) evaluated and logged.

    Large checkpoints are written by `writer` while the next epoch trains. Each MLflow call
    costs milliseconds whatever it carries, so an epoch's metrics wait to be logged together
    with the next ones until `METRICS_EVERY_S` have passed since the last write (every epoch of
    a long run, all at once at the end of a short one). The time measured ends once all is written.
    """
    cfg, schedule, net = trainer.cfg, trainer.schedule, trainer.raw
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    started = time.perf_counter()
    trained = 0
    metrics: dict[str, float] = {}
    pending: list[Any] = []
    logged_at = started
    with cpu_threads_for(net, cfg, trainer.device):
        first_epoch, first = schedule.position(start_step)
        try:
            for epoch in range(first_epoch, cfg.epochs + 1):
                train_loss = trainer.run_epoch(train_split, epoch, first)
                trained += len(train_split) - min(first * cfg.batch_size, len(train_split))
                first = 0
                trainer.checkpoint(epoch * schedule.steps_per_epoch)
                if mlflow is not None:
                    held = evaluate(trainer.adapter, net, test_split)
                    metrics = {
                        "train_loss": train_loss,
                        "val_loss": held["loss"],
                        "val_accuracy": held["accuracy"],
                    }
                    pending += [_metric(k, v, epoch) for k, v in metrics.items()]
                    if time.perf_counter() - logged_at >= METRICS_EVERY_S:
                        writer.submit(partial(mlflow.log_batch, trainer.run_id, metrics=pending))
                        pending, logged_at = [], time.perf_counter()
        finally:  # the last epochs' metrics, also when training stopped with an exception
            if pending and mlflow is not None:
                writer.submit(partial(mlflow.log_batch, trainer.run_id, metrics=pending))
        writer.wait()
    elapsed = time.perf_counter() - started
    if not metrics:
        held = evaluate(trainer.adapter, net, test_split)
        metrics = {"val_loss": held["loss"], "val_accuracy": held["accuracy"]}
    return _Outcome(metrics, trained, elapsed, peak_memory_mb(trainer.device))


def _finish(
    trainer: Trainer,
    key: str,
    meta: dict[str, str],
    start: Start,
    start_step: int,
    outcome: _Outcome,
    mlflow: Any | None,
    adapter_name: str,
    warm_start: WarmStart | None,
) -> TrainingRecord:
    """Save the final weights (rank 0) unless the run logged them already, log them once, and return the record."""
    schedule, ranks, device = trainer.schedule, trainer.ranks, trainer.device
    precision = str(autocast_dtype(device, trainer.cfg.amp) or torch.float32).removeprefix("torch.")
    final = trainer.folder / "model.safetensors"
    epochs = epoch_digests(trainer.folder, trainer.cfg.epochs, schedule.steps_per_epoch)
    logged = logged_weights(mlflow, trainer.run_id) if mlflow is not None else None
    if ranks.is_main:
        restore = partial(download_weights, mlflow, trainer.run_id)
        save_final(trainer.adapter, trainer.raw.cpu(), final, meta, logged, restore)
    ranks.barrier()
    digest = file_digest(final)
    if mlflow is not None:
        if logged is None:
            _log_weights(mlflow, trainer, start_step, outcome, precision, digest)
        if trainer.progress is not None and trainer.progress.enabled:
            trainer.progress.finish(_history(mlflow, trainer.run_id, schedule.steps_per_epoch))
    return TrainingRecord(
        checkpoint_path=final,
        checkpoint_digest=digest,
        base_checkpoint_digest=start.base_digest,
        epoch_checkpoints=epochs,
        device=device.type,
        precision=precision,
        epochs=trainer.cfg.epochs,
        resumed_from_epoch=start_step // schedule.steps_per_epoch,
        resumed_from_step=start_step,
        mlflow_run_id=trainer.run_id,
        metrics=outcome.metrics,
        samples_per_s=outcome.samples_per_s,
        peak_memory_mb=outcome.peak_mb,
        training_key=key,
        adapter=adapter_name,
        processes=ranks.world,
        warm_start=warm_start,
        architecture=start.architecture,
    )


def _log_weights(
    mlflow: Any, trainer: Trainer, start_step: int, outcome: _Outcome, precision: str, digest: Digest
) -> None:
    """Log the run's summary tags, speed and final weights (once per run)."""
    run_id = trainer.run_id
    summary = {
        "device": trainer.device.type,
        "precision": precision,
        "processes": str(trainer.ranks.world),
        "resumed_from_step": str(start_step),
        "checkpoint_sha256": digest.value,
    }
    speed = []
    if outcome.trained:
        summary.update(samples_per_s=f"{outcome.samples_per_s:.1f}", peak_memory_mb=f"{outcome.peak_mb:.0f}")
        speed = [
            _metric("samples_per_s", outcome.samples_per_s, 0),
            _metric("peak_memory_mb", outcome.peak_mb, 0),
        ]
    mlflow.log_batch(run_id, metrics=speed, tags=[_tag(k, v) for k, v in summary.items()])
    final = trainer.folder / "model.safetensors"
    mlflow.log_artifact(run_id, str(final), artifact_path=CHECKPOINT_ARTIFACT.rsplit("/", 1)[0])


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
