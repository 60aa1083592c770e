"""A re-run with unchanged inputs reuses the pure stages' results; any change to their inputs does not."""

from __future__ import annotations

from pathlib import Path

from attestflow.digests import file_digest
from attestflow.outcomes import ReleaseSummary
from flows.release import release
from tests.conftest import ExampleRepo

CACHED = ("validate_data", "fine_tune", "export_onnx", "validate_onnx")


def _states(flow_run_id: str | None) -> dict[str, str]:
    """Stage name -> state name of each task run of the flow run (the last one, where retried)."""
    from prefect.client.orchestration import get_client

    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 200}
    with get_client(sync_client=True) as client:
        runs = client._client.post("/task_runs/filter", json=body).json()
    return {r["name"].rsplit("-", 1)[0]: r["state"]["name"] for r in runs}


def _run(config: Path) -> ReleaseSummary:
    return release(config_path=str(config))


def test_unchanged_rerun_hits_the_cache_and_a_changed_section_misses(example_repo: ExampleRepo) -> None:
    config = example_repo.write_config()
    first = _run(config)
    assert {s: _states(first.flow_run_id)[s] for s in CACHED} == dict.fromkeys(CACHED, "Completed")

    # Retries and timeouts are not inputs of the result: still the same key.
    second = _run(example_repo.write_config(fine_tune={"retries": 3, "timeout_s": 999}))
    states = _states(second.flow_run_id)
    assert {s: states[s] for s in CACHED} == dict.fromkeys(CACHED, "Cached")
    assert states["snapshot"] == "Completed"  # the snapshot is what computes the data md5: never cached
    assert second.training == first.training
    assert second.onnx == first.onnx

    third = _run(example_repo.write_config(fine_tune={"epochs": 3}))
    states = _states(third.flow_run_id)
    assert states["validate_data"] == "Cached"
    assert {s: states[s] for s in CACHED[1:]} == dict.fromkeys(CACHED[1:], "Completed")
    assert third.training.epochs == 3
    assert third.onnx.digest != first.onnx.digest


def test_a_corrupted_or_deleted_cached_onnx_is_made_again(example_repo: ExampleRepo) -> None:
    config = example_repo.write_config()
    first = _run(config)
    onnx = first.onnx.onnx_path
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\0")

    second = _run(config)
    states = _states(second.flow_run_id)
    assert states["fine_tune"] == "Cached"
    assert states["export_onnx"] == "Completed"
    assert file_digest(second.onnx.onnx_path) == second.onnx.digest
    assert second.onnx.onnx_path != onnx

    second.onnx.onnx_path.unlink()
    third = _run(config)
    states = _states(third.flow_run_id)
    assert states["export_onnx"] == "Completed"
    assert third.onnx.onnx_path.is_file()
    assert file_digest(third.onnx.onnx_path) == third.onnx.digest

    fourth = _run(config)
    assert _states(fourth.flow_run_id)["export_onnx"] == "Cached"
    assert fourth.onnx == third.onnx
