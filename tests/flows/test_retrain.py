"""Scheduled retraining skips unchanged data quickly and releases changed data."""

from __future__ import annotations

import socket
import time

import pytest
from prefect.states import State

from attestflow.dvc import dvc_md5
from attestflow.errors import RegistryUnavailableError
from attestflow.outcomes import ReleaseSummary
from attestflow.workspace import Workspace
from flows.retrain import retrain
from tasks.generate_data import generate
from tests.conftest import ExampleRepo


def test_retrain_skips_unchanged_data_and_releases_changed_data(example_repo: ExampleRepo) -> None:
    config = str(example_repo.write_config())
    first = retrain(config_path=config)
    assert isinstance(first, ReleaseSummary)
    assert first.registration.version == "1"
    assert dvc_md5(example_repo.root, example_repo.data) == first.snapshot.dvc_md5

    started = time.perf_counter()
    state = retrain(config_path=config, return_state=True)
    assert isinstance(state, State) and state.is_completed()
    assert state.name == "Skipped" and "data unchanged" in str(state.message)
    assert time.perf_counter() - started < 20  # a flow run of one hash, not a release

    generate(1000, seed=99).to_csv(example_repo.data, index=False)
    changed = retrain(config_path=config)
    assert isinstance(changed, ReleaseSummary)
    assert changed.registration.version == "2"
    assert changed.snapshot.dvc_md5 != first.snapshot.dvc_md5


def test_retraining_fails_when_the_registry_cannot_say_who_is_champion(example_repo: ExampleRepo) -> None:
    with socket.socket() as s:  # a port nothing listens on: MLflow's error there once read as "no champion"
        s.bind(("127.0.0.1", 0))
        broken = f"http://127.0.0.1:{s.getsockname()[1]}"
    config = str(example_repo.write_config(register={"tracking_uri": broken}))
    state = retrain(config_path=config, return_state=True)
    assert isinstance(state, State) and state.is_failed() and state.name != "Skipped"
    with pytest.raises(RegistryUnavailableError, match="the model registry at "):
        state.result()
    assert not list(Workspace.at(example_repo.workspace).releases.glob("*"))  # nothing was released
