"""Retraining warm-starts from the champion's verified training checkpoint, never from a swapped one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from attestflow.errors import GateFailedError
from attestflow.keys import trusted_public_key
from attestflow.workspace import Workspace
from flows.release import release
from tasks.warm_start import champion_weights
from tests.conftest import ExampleRepo


def test_retraining_warm_starts_from_the_champion_and_refuses_a_swapped_checkpoint(
    example_repo: ExampleRepo,
) -> None:
    first = release(config_path=str(example_repo.write_config()))
    warm_cfg = example_repo.write_config(
        "warm.yaml", model={"warm_start": "champion"}, fine_tune={"epochs": 3}
    )
    second = release(config_path=str(warm_cfg))

    assert second.promotion is not None, "the warm-started release should become the champion"
    warm = second.training.warm_start
    assert warm is not None
    assert warm.model_uri == f"models:/tiny-credit/{first.registration.version}"
    assert warm.digest.value == first.training.checkpoint_digest.value
    assert second.training.base_checkpoint_digest == warm.digest
    params = (
        MlflowClient(Workspace.at(example_repo.workspace).mlflow_uri)
        .get_run(second.training.mlflow_run_id)
        .data.params
    )
    assert params["warm_start"] == warm.model_uri

    ws = Workspace.at(example_repo.workspace)
    uri = ws.mlflow_uri
    key = trusted_public_key(None, ws.root)
    # Swap the bytes of the champion's logged training checkpoint: the digest in its signed
    # provenance no longer matches, and the warm start is refused.
    run = MlflowClient(uri).get_run(second.training.mlflow_run_id)
    logged = Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoint" / "model.safetensors"
    data = bytearray(logged.read_bytes())
    data[-1] ^= 0xFF
    logged.write_bytes(bytes(data))
    shutil.rmtree(ws.training / "warm-start", ignore_errors=True)
    with pytest.raises(GateFailedError, match="provenance says"):
        champion_weights("tiny-credit", "champion", uri, key, ws)
