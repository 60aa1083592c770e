"""The registry facade: MLflow's not-found answers are absent, every other failure is an error (exit 3)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from attestflow.errors import BadInputError, RegistryUnavailableError, UnavailableError
from attestflow.registry import FAST_HTTP, ModelRef, Registry, parse_model_uri
from flows.retrain import champion_data_md5
from tasks.gates import regression
from tasks.gates.registry import champion
from tests.code.planted import Lab, bundled_policy


def _store(tmp_path: Path) -> str:
    """A SQLite registry with model ``credit`` version 1 (tagged) and version 2, no aliases."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = MlflowClient(uri, uri)
    c.create_registered_model("credit")
    c.create_model_version("credit", source=tmp_path.as_uri(), tags={"release_key": "k1", "data_md5": "abc"})
    c.create_model_version("credit", source=tmp_path.as_uri(), tags={"release_key": "k2"})
    return uri


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _broken_stores(tmp_path: Path) -> dict[str, str]:
    """Registry URIs that cannot answer: a closed port, a store under a regular file, a file that is no database."""
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "junk.db").write_text("this is not a database\n" * 100)
    return {
        "closed port": f"http://user:secret@127.0.0.1:{_closed_port()}",
        "folder is a file": f"sqlite:///{tmp_path}/a-file/mlflow.db",
        "not a database": f"sqlite:///{tmp_path}/junk.db",
    }


def test_an_unset_alias_and_a_missing_model_are_absent_not_errors(tmp_path: Path) -> None:
    registry = Registry(_store(tmp_path))
    assert registry.alias_version("credit", "champion") is None
    assert registry.version("models:/credit@champion") is None
    assert registry.version("models:/credit/9") is None
    assert registry.version("models:/nope/1") is None
    assert registry.alias_version("nope", "champion") is None
    assert registry.aliases("nope") == {}
    assert registry.find_versions("nope") == []
    assert registry.run("0" * 32) is None


def test_versions_are_found_by_uri_alias_and_tag(tmp_path: Path) -> None:
    registry = Registry(_store(tmp_path))
    registry.set_alias("credit", "champion", "1")
    champ = registry.version(parse_model_uri("models:/credit@champion"))
    assert champ is not None and champ.version == "1" and champ.tags["data_md5"] == "abc"
    assert champ.aliases == ("champion",) and champ.uri == "models:/credit/1"
    assert registry.version("models:/credit/2") == registry.find_versions(release_key="k2")[0]
    assert [v.version for v in registry.find_versions("credit")] == ["1", "2"]
    assert registry.aliases("credit") == {"champion": "1"}
    registry.set_model_tag("credit", "audit_head", "3:ff")
    registry.set_version_tag("credit", "2", "gates_passed", "true")
    assert registry.model_tags()["credit"]["audit_head"] == "3:ff"
    assert registry.find_versions("credit", gates_passed="true")[0].version == "2"
    registry.delete_alias("credit", "champion")
    assert registry.alias_version("credit", "champion") is None


def test_a_malformed_model_uri_or_search_value_is_bad_input(tmp_path: Path) -> None:
    registry = Registry(_store(tmp_path))
    with pytest.raises(BadInputError, match="not a model URI"):
        registry.version("models:/credit")
    with pytest.raises(BadInputError, match="quote"):
        registry.find_versions("credit", release_key="k' or name = 'x")
    assert ModelRef("credit", None, "champion").uri == "models:/credit@champion"


@pytest.mark.parametrize(
    "ask",
    [
        lambda r: r.ping(),
        lambda r: r.alias_version("credit", "champion"),
        lambda r: r.version("models:/credit/1"),
        lambda r: r.find_versions("credit", release_key="k1"),
        lambda r: r.set_alias("credit", "champion", "1"),
    ],
    ids=["ping", "alias", "version", "search", "set alias"],
)
def test_an_unreachable_registry_is_an_error_not_a_missing_champion(
    tmp_path: Path, ask: Callable[[Registry], object]
) -> None:
    for what, uri in _broken_stores(tmp_path).items():
        started = time.perf_counter()
        with pytest.raises(RegistryUnavailableError) as raised:
            ask(Registry(uri))
        assert time.perf_counter() - started < 15, what
        assert isinstance(raised.value, UnavailableError)
        message = str(raised.value)
        assert message.startswith("the model registry at ") and "\n" not in message, what
        assert "secret" not in message, what


def test_the_fast_failing_http_settings_do_not_outlive_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in FAST_HTTP:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
    with pytest.raises(RegistryUnavailableError):
        Registry(_broken_stores(tmp_path)["closed port"]).ping()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR" not in os.environ


def test_retraining_asks_for_the_champion_and_fails_when_the_registry_cannot_answer(tmp_path: Path) -> None:
    uri = _store(tmp_path)
    assert champion_data_md5("credit", "champion", uri) is None
    Registry(uri).set_alias("credit", "champion", "1")
    assert champion_data_md5("credit", "champion", uri) == "abc"
    with pytest.raises(RegistryUnavailableError):
        champion_data_md5("credit", "champion", _broken_stores(tmp_path)["not a database"])


def test_a_broken_registry_gives_a_baseline_problem_that_fails_the_regression_gate(
    lab: Lab, tmp_path: Path
) -> None:
    uri = _broken_stores(tmp_path)["folder is a file"]
    base = champion("credit", "champion", uri, lab.held_out.inputs, "cpu", None)
    assert base.uri == "models:/credit@champion" and base.problem is not None
    assert base.problem.startswith("the model registry at ")
    decisions = regression.gate(lab.evaluate(lab.good_onnx, baseline=base), bundled_policy())
    assert decisions and all(not d.passed and "the model registry at " in d.reason for d in decisions)
