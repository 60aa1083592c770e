"""Training in other processes: killed with SIGKILL mid-epoch and resumed, and launched under torchrun (DDP)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from attestflow.config import load_config
from attestflow.records import TrainingRecord
from attestflow.training.checkpoints import last_good_checkpoint
from attestflow.training.launcher import train_release
from attestflow.workspace import Workspace
from tasks import fine_tune as ft
from tests.conftest import ROOT, ExampleRepo

# Trains in a child process and blocks forever after optimizer step 10, once step 8's checkpoint is on disk.
STALL_AFTER_STEP_10 = """
import pathlib, sys, time
from attestflow.config import load_config
from attestflow.workspace import Workspace
from tasks import fine_tune as ft

cfg = load_config(sys.argv[1])
ws = Workspace.at(cfg.workspace)
ws.activate()
marker = pathlib.Path(sys.argv[2])

def stall(step):
    if step == 10:
        marker.write_text("step 10")
        time.sleep(600)

ft.fine_tune(cfg.fine_tune, cfg.data, ws, "md5-of-data", ws.mlflow_uri, "tests", model=cfg.model, step_hook=stall)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_sigkill_mid_epoch_then_rerun_ends_with_the_same_weights(
    example_repo: ExampleRepo, tmp_path: Path
) -> None:
    settings = {"epochs": 2, "batch_size": 64, "checkpoint_every": 4}
    killed_cfg = example_repo.write_config("killed.yaml", fine_tune=settings)
    marker = tmp_path / "stalled"
    child = subprocess.Popen(
        [sys.executable, "-c", STALL_AFTER_STEP_10, str(killed_cfg), str(marker)], cwd=ROOT, env=_env()
    )
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert child.poll() is None, "the training process ended before step 10"
            assert time.monotonic() < deadline, "training did not reach step 10 in time"
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    folder = next(p for p in (example_repo.workspace / "training").iterdir() if p.name != "imported")
    assert last_good_checkpoint(folder, 10**6) == last_good_checkpoint(folder, 8)

    # The re-run is the training's own command-line entry point, in a fresh process.
    out = tmp_path / "resumed.json"
    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "attestflow.training.launcher",
            f"--config={killed_cfg}",
            "--data-md5=md5-of-data",
            f"--out={out}",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed = TrainingRecord.from_json(json.loads(out.read_text()))
    # 800 training rows / 64 = 13 optimizer steps an epoch: step 8 is in the middle of epoch 1.
    assert resumed.resumed_from_step == 8 and resumed.resumed_from_epoch == 0

    straight_cfg = load_config(example_repo.write_config("straight.yaml", fine_tune=settings))
    ws = Workspace.at(tmp_path / "straight-ws")
    ws.activate()
    straight = ft.fine_tune(
        straight_cfg.fine_tune, straight_cfg.data, ws, "md5-of-data", ws.mlflow_uri, "tests"
    )
    a, b = load_file(str(straight.checkpoint_path)), load_file(str(resumed.checkpoint_path))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def _launch(repo: ExampleRepo, tmp_path: Path, processes: int, device: str) -> TrainingRecord:
    cfg = repo.config(fine_tune={"processes": processes, "device": device, "epochs": 2})
    ws = Workspace.at(cfg.workspace)
    ws.activate()
    return train_release(cfg, ws, "md5-of-data", ws.mlflow_uri, {"test": "ddp"}, tmp_path)


def test_several_processes_train_under_torchrun_with_ddp(example_repo: ExampleRepo, tmp_path: Path) -> None:
    rec = _launch(example_repo, tmp_path, processes=2, device="cpu")
    assert rec.processes == 2
    assert rec.metrics["val_accuracy"] > 0.6
    assert len(rec.epoch_checkpoints) == 2 and rec.checkpoint_path.is_file()
    from mlflow.tracking import MlflowClient

    tags = MlflowClient(Workspace.at(example_repo.workspace).mlflow_uri).get_run(rec.mlflow_run_id).data.tags
    assert tags["processes"] == "2" and tags["test"] == "ddp"


def test_bad_input_in_a_torchrun_launch_is_one_clear_message(
    example_repo: ExampleRepo, tmp_path: Path
) -> None:
    from attestflow.errors import BadInputError

    cfg = example_repo.config(fine_tune={"processes": 2, "base_checkpoint": str(tmp_path / "missing")})
    ws = Workspace.at(cfg.workspace)
    with pytest.raises(BadInputError, match="base checkpoint not found"):
        train_release(cfg, ws, "md5-of-data", ws.mlflow_uri, {}, tmp_path)


@pytest.mark.gpu
def test_ddp_across_gpus_with_nccl(example_repo: ExampleRepo, tmp_path: Path) -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("DDP across GPUs needs two or more")
    rec = _launch(example_repo, tmp_path, processes=torch.cuda.device_count(), device="cuda")
    assert rec.device == "cuda" and rec.processes == torch.cuda.device_count()
    assert rec.precision in ("bfloat16", "float16")


# Trains in a child process with every checkpoint written by the background thread, one per step.
TRAIN = """
import sys
from attestflow.config import load_config
from attestflow.workspace import Workspace
from tasks import fine_tune as ft

cfg = load_config(sys.argv[1])
ws = Workspace.at(cfg.workspace)
ws.activate()
ft.fine_tune(cfg.fine_tune, cfg.data, ws, "md5-of-data", ws.mlflow_uri, "tests", model=cfg.model)
"""


def test_sigkill_while_checkpoints_are_written_in_the_background_then_rerun_ends_with_the_same_weights(
    example_repo: ExampleRepo, tmp_path: Path
) -> None:
    settings = {"epochs": 40, "batch_size": 64, "checkpoint_every": 1, "background_checkpoint_mb": 0}
    killed_cfg = example_repo.write_config("killed-bg.yaml", fine_tune=settings)
    folder_root = example_repo.workspace / "training"
    child = subprocess.Popen([sys.executable, "-c", TRAIN, str(killed_cfg)], cwd=ROOT, env=_env())
    try:
        deadline = time.monotonic() + 180
        # Killed at no chosen step: a while after the first checkpoints, mid-write or between writes.
        while not any(folder_root.glob("*/step-*.json")):
            assert child.poll() is None, "the training process ended before its first checkpoint"
            assert time.monotonic() < deadline, "training wrote no checkpoint in time"
            time.sleep(0.01)
        time.sleep(0.3)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL, "training ended before it was killed"
    folder = next(p for p in folder_root.iterdir() if p.name != "imported")
    killed_at = last_good_checkpoint(folder, 10**6)
    assert killed_at is not None and 0 < killed_at.step < 40 * 13

    out = tmp_path / "resumed.json"
    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "attestflow.training.launcher",
            f"--config={killed_cfg}",
            "--data-md5=md5-of-data",
            f"--out={out}",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed = TrainingRecord.from_json(json.loads(out.read_text()))
    assert resumed.resumed_from_step == killed_at.step

    straight_cfg = load_config(example_repo.write_config("straight-bg.yaml", fine_tune=settings))
    ws = Workspace.at(tmp_path / "straight-ws")
    ws.activate()
    straight = ft.fine_tune(
        straight_cfg.fine_tune, straight_cfg.data, ws, "md5-of-data", ws.mlflow_uri, "tests"
    )
    a, b = load_file(str(straight.checkpoint_path)), load_file(str(resumed.checkpoint_path))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
