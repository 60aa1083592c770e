"""fine_tune trains from the base checkpoint, checkpoints by step and epoch, and resumes exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from attestflow.config import FineTuneConfig
from attestflow.errors import BadInputError
from attestflow.records import TrainingRecord
from attestflow.training.checkpoints import last_good_checkpoint
from attestflow.training.loop import Schedule
from attestflow.workspace import Workspace
from tasks import fine_tune as ft
from tests.conftest import ExampleRepo


def _run(repo: ExampleRepo, ws_dir: Path, epochs: int, step_hook: Any = None, **kw: Any) -> TrainingRecord:
    cfg = FineTuneConfig(base_checkpoint=repo.base_checkpoint, epochs=epochs, batch_size=64, **kw)
    ws = Workspace.at(ws_dir)
    ws.activate()
    data = repo.config().data
    return ft.fine_tune(cfg, data, ws, "md5-of-data", ws.mlflow_uri, "tests", step_hook=step_hook)


def test_training_writes_a_verified_checkpoint_per_epoch(example_repo: ExampleRepo, tmp_path: Path) -> None:
    rec = _run(example_repo, tmp_path / "ws", epochs=3)
    assert rec.resumed_from_epoch == 0
    assert len(rec.epoch_checkpoints) == 3
    assert rec.device == "cpu" and rec.precision == "float32"
    assert rec.metrics["val_accuracy"] > 0.6
    assert rec.checkpoint_digest.value != rec.base_checkpoint_digest.value
    from mlflow.tracking import MlflowClient

    ws = Workspace.at(tmp_path / "ws")
    history = MlflowClient(ws.mlflow_uri).get_metric_history(rec.mlflow_run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2, 3]


def test_resumed_training_ends_with_the_same_weights(example_repo: ExampleRepo, tmp_path: Path) -> None:
    straight = _run(example_repo, tmp_path / "a", epochs=3)
    _run(example_repo, tmp_path / "b", epochs=1)
    resumed = _run(example_repo, tmp_path / "b", epochs=3)
    assert resumed.resumed_from_epoch == 1
    assert resumed.mlflow_run_id != straight.mlflow_run_id
    a, b = load_file(str(straight.checkpoint_path)), load_file(str(resumed.checkpoint_path))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_a_corrupted_last_checkpoint_is_skipped(example_repo: ExampleRepo, tmp_path: Path) -> None:
    first = _run(example_repo, tmp_path / "ws", epochs=2)
    folder = first.checkpoint_path.parent
    steps = sorted(folder.glob("step-*.safetensors"))
    assert len(steps) == 2
    data = bytearray(steps[-1].read_bytes())
    data[-1] ^= 0xFF
    steps[-1].write_bytes(bytes(data))
    good = last_good_checkpoint(folder, 10**6)
    assert good is not None and good.path == steps[0]
    again = _run(example_repo, tmp_path / "ws", epochs=2)
    assert again.resumed_from_epoch == 1


def test_a_half_written_checkpoint_without_sidecar_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "step-00000001.safetensors.partial").write_bytes(b"junk")
    (tmp_path / "step-00000002.safetensors").write_bytes(b"junk")
    assert last_good_checkpoint(tmp_path, 5) is None


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)


def test_schedule_counts_optimizer_steps_with_accumulation() -> None:
    sched = Schedule(rows=1000, batch_size=64, accum=3, seed=0)
    assert sched.batches_per_epoch == 16 and sched.steps_per_epoch == 6
    assert sched.position(0) == (1, 0)
    assert sched.position(4) == (1, 12)
    assert sched.position(6) == (2, 0)
    first, again = sched.batches(2), sched.batches(2)
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
    assert not (sched.batches(1)[0] == first[0]).all()


class Crash(Exception):
    pass


def test_a_crash_mid_epoch_resumes_from_the_step_checkpoint(
    example_repo: ExampleRepo, tmp_path: Path
) -> None:
    kw: dict[str, Any] = {"checkpoint_every": 4, "grad_accum_steps": 2}
    straight = _run(example_repo, tmp_path / "a", epochs=2, **kw)

    def crash_at_step_10(step: int) -> None:
        if step == 10:
            raise Crash

    with pytest.raises(Crash):
        _run(example_repo, tmp_path / "b", epochs=2, step_hook=crash_at_step_10, **kw)
    folder = next((tmp_path / "b" / "training").glob("*/"))
    # Older mid-epoch checkpoints are pruned: epoch 1's end (step 7) and the newest (step 8) stay.
    assert sorted(p.name for p in folder.glob("step-*.safetensors")) == [
        "step-00000007.safetensors",
        "step-00000008.safetensors",
    ]
    resumed = _run(example_repo, tmp_path / "b", epochs=2, **kw)
    # 800 training rows / 64 = 13 batches = 7 optimizer steps an epoch: step 8 is mid-epoch 2.
    assert resumed.resumed_from_step == 8 and resumed.resumed_from_epoch == 1
    _same_weights(straight.checkpoint_path, resumed.checkpoint_path)


def test_forcing_cuda_without_a_gpu_is_bad_input(example_repo: ExampleRepo, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(BadInputError, match="no CUDA device"):
        _run(example_repo, tmp_path / "ws", epochs=1, device="cuda")


def test_a_base_checkpoint_that_is_not_safetensors_is_refused(
    example_repo: ExampleRepo, tmp_path: Path
) -> None:
    fake = tmp_path / "base.safetensors"
    fake.write_bytes(b"\x80\x04\x95definitely a pickle")
    cfg = FineTuneConfig(base_checkpoint=fake, epochs=1)
    ws = Workspace.at(tmp_path / "ws")
    with pytest.raises(BadInputError, match="refused: it is a pickle file"):
        ft.fine_tune(cfg, example_repo.config().data, ws, "x", ws.mlflow_uri, "tests")


@pytest.mark.gpu
def test_training_on_cuda_uses_mixed_precision(example_repo: ExampleRepo, tmp_path: Path) -> None:
    rec = _run(example_repo, tmp_path / "ws", epochs=2, device="cuda", amp=True)
    assert rec.device == "cuda"
    assert rec.precision in ("bfloat16", "float16")
    assert rec.metrics["val_accuracy"] > 0.6


def _logged_digest(ws_dir: Path, rec: TrainingRecord, dest: Path) -> str:
    """The SHA-256 of the weights `rec`'s MLflow run logged, downloaded to `dest` as a warm start does."""
    from mlflow.tracking import MlflowClient

    from attestflow.digests import file_digest
    from attestflow.training.checkpoints import CHECKPOINT_ARTIFACT

    ws = Workspace.at(ws_dir)
    dest.mkdir(parents=True, exist_ok=True)
    path = MlflowClient(ws.mlflow_uri).download_artifacts(rec.mlflow_run_id, CHECKPOINT_ARTIFACT, str(dest))
    return file_digest(Path(path)).value


def test_runs_differing_only_in_epochs_keep_their_own_checkpoint_and_run(
    example_repo: ExampleRepo, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    short = _run(example_repo, ws, epochs=1)
    long = _run(example_repo, ws, epochs=2)
    assert short.training_key != long.training_key and short.mlflow_run_id != long.mlflow_run_id
    assert short.checkpoint_path.parent != long.checkpoint_path.parent
    assert long.resumed_from_epoch == 1  # started from copies of the shorter run's checkpoints
    assert long.epoch_checkpoints[0] == short.epoch_checkpoints[0]
    for rec in (short, long):
        assert _logged_digest(ws, rec, tmp_path / rec.training_key) == rec.checkpoint_digest.value
    again = _run(example_repo, ws, epochs=1)  # a re-run keeps the logged weights' bytes
    assert again.mlflow_run_id == short.mlflow_run_id and again.checkpoint_digest == short.checkpoint_digest
    assert _logged_digest(ws, short, tmp_path / "again") == short.checkpoint_digest.value


def test_runs_differing_only_in_epochs_at_once_never_share_a_folder_or_run(
    example_repo: ExampleRepo, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ws = tmp_path / "ws"
    _run(example_repo, ws, epochs=1, lr=0.01)  # creates the MLflow store once, before the race
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda e: _run(example_repo, ws, epochs=e), (2, 3)))
    assert len({r.training_key for r in runs}) == len({r.mlflow_run_id for r in runs}) == 2
    for rec in runs:
        assert _logged_digest(ws, rec, tmp_path / rec.training_key) == rec.checkpoint_digest.value


def test_the_training_key_covers_every_setting_that_changes_the_weights() -> None:
    from attestflow.config import DataConfig, ModelConfig
    from attestflow.digests import Digest
    from attestflow.training.fine_tuning import training_key

    data = DataConfig(path=Path("d.csv"), label="y", features=["a"])
    base = Digest("sha256", "0" * 64, "the base weights")

    def key(device: str = "cpu", **kw: Any) -> str:
        return training_key(FineTuneConfig(**kw), ModelConfig(), data, "md5", base, device)

    changing: list[dict[str, Any]] = [
        {"epochs": 7},
        {"batch_size": 64},
        {"lr": 0.01},
        {"weight_decay": 0.1},
        {"seed": 1},
        {"amp": False},
        {"grad_accum_steps": 2},
        {"compile": True},
        {"processes": 2},
        {"allow_pickle_import": True},
    ]
    assert len({key(), *(key(**kw) for kw in changing), key("cuda")}) == len(changing) + 2
    same: list[dict[str, Any]] = [
        {"device": "cpu"},
        {"num_workers": 2},
        {"checkpoint_every": 5},
        {"background_checkpoint_mb": 0},
        {"retries": 3},
        {"timeout_s": 5.0},
    ]
    assert {key(**kw) for kw in same} == {key()}
