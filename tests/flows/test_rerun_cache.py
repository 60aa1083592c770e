"""An identical re-run is served the signed bundle it made, verified on the hit; a tampered or changed one is signed again."""

from __future__ import annotations

from pathlib import Path

from attestflow.audit import AuditLog
from attestflow.outcomes import ReleaseSummary
from flows.release import release
from tests.conftest import ExampleRepo
from tests.flows.test_stage_cache import _states


def _run(config: Path) -> ReleaseSummary:
    return release(config_path=str(config))


def _served(example_repo: ExampleRepo) -> list[dict[str, object]]:
    return [e for e in AuditLog.of(example_repo.workspace).entries() if e["event"] == "served_from_cache"]


def test_an_identical_rerun_is_served_the_verified_bundle_and_any_change_signs_again(
    example_repo: ExampleRepo,
) -> None:
    config = example_repo.write_config()
    first = _run(config)
    assert _states(first.flow_run_id)["sign"] == "Completed"
    assert _served(example_repo) == []

    second = _run(config)
    assert _states(second.flow_run_id)["sign"] == "Cached"
    assert second.signature == first.signature
    assert second.registration.version == first.registration.version
    (served,) = _served(example_repo)
    assert served["details"] == {
        "stage": "sign",
        "release_key": first.signature.release_key,
        "bundle": str(first.signature.bundle_dir),
    }

    # A cached bundle whose bytes changed does not verify: it is not served, the stage signs again.
    metrics = first.signature.bundle_dir / "attestation" / "metrics.json"
    metrics.write_text(metrics.read_text().replace("{", "{ ", 1))
    third = _run(config)
    assert _states(third.flow_run_id)["sign"] == "Completed"
    assert third.signature.bundle_dir.is_relative_to(third.release_dir)
    assert len(_served(example_repo)) == 1

    # Any changed input of the bundle is a new key.
    fourth = _run(example_repo.write_config(sign={"builder_id": "https://example.org/other-builder"}))
    assert _states(fourth.flow_run_id)["sign"] == "Completed"
    assert fourth.signature.release_key != first.signature.release_key
