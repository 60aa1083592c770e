"""Registration that a crash cannot leave half-done: a version is created with its tags, and found again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from mlflow.tracking import MlflowClient

from attestflow.records import OnnxValidationRecord, SignatureRecord, TrainingRecord
from attestflow.registry import INCOMPLETE, Registry
from tasks.register import register

TAGS = {"release_key": "k1", "onnx_sha256": "o1", "bundle_sha256": "b1"}


def _store(tmp_path: Path) -> tuple[str, MlflowClient, str]:
    """(URI, client, run id) of a SQLite store with one finished run."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri, uri)
    run = client.create_run(client.create_experiment("x", artifact_location=(tmp_path / "art").as_uri()))
    client.set_terminated(run.info.run_id)
    return uri, client, run.info.run_id


def _logged_model(client: MlflowClient, run_id: str) -> str:
    experiment = client.get_run(run_id).info.experiment_id
    return str(client.create_logged_model(experiment, name="model", source_run_id=run_id).model_id)


def _register_again(uri: str, run_id: str, tags: dict[str, str]) -> Any:
    """`register` for inputs already registered: only the run id and tags are read on that path."""
    unused: Any = SimpleNamespace()
    return register(
        cast(SignatureRecord, unused),
        cast(TrainingRecord, SimpleNamespace(mlflow_run_id=run_id)),
        cast(OnnxValidationRecord, unused),
        model_name="credit",
        tags=tags,
        tracking_uri=uri,
    )


def test_a_version_is_created_with_every_tag_in_one_call_and_the_model_is_created_when_missing(
    tmp_path: Path,
) -> None:
    uri, client, run_id = _store(tmp_path)
    registry = Registry(uri)
    first = registry.create_version("credit", _logged_model(client, run_id), run_id, TAGS)
    second = registry.create_version("credit", _logged_model(client, run_id), run_id, {"release_key": "k2"})
    assert (first.version, second.version) == ("1", "2")
    assert client.get_model_version("credit", "1").tags == TAGS
    assert first.model_id and first.run_id == run_id
    assert [v.version for v in registry.versions_of_run("credit", run_id)] == ["1", "2"]
    registry.delete_version_tag("credit", "1", "bundle_sha256")
    registry.delete_version_tag("credit", "1", "bundle_sha256")  # already gone: nothing happens
    assert "bundle_sha256" not in client.get_model_version("credit", "1").tags


def test_a_rerun_reuses_the_version_its_crashed_predecessor_left_incomplete_and_says_so(
    tmp_path: Path,
) -> None:
    uri, client, run_id = _store(tmp_path)
    Registry(uri).create_version(
        "credit", _logged_model(client, run_id), run_id, {**TAGS, INCOMPLETE: "no gate verdict attached yet"}
    )
    again = _register_again(uri, run_id, TAGS)
    assert (again.version, again.reused, again.resumed) == ("1", True, True)
    assert again.audit_events()[0].details == {"reused": True, "resumed_incomplete": True}
    assert len(client.search_model_versions("name = 'credit'")) == 1


def test_a_version_of_the_same_run_without_a_release_key_is_marked_incomplete_never_reused(
    tmp_path: Path,
) -> None:
    uri, client, run_id = _store(tmp_path)
    registry = Registry(uri)
    # What registering and tagging in two steps left when killed in between: one tag, no release key.
    registry.create_version("credit", _logged_model(client, run_id), run_id, {"data_md5": "d"})
    registry.create_version("credit", _logged_model(client, run_id), run_id, TAGS)
    again = _register_again(uri, run_id, TAGS)
    assert (again.version, again.reused, again.resumed) == ("2", True, False)
    assert client.get_model_version("credit", "1").tags[INCOMPLETE].endswith("never promote")
    assert INCOMPLETE not in client.get_model_version("credit", "2").tags
