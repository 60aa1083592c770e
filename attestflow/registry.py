"""The one way attestflow asks the MLflow model registry anything.

"There is no champion" and "the registry could not be asked" lead to opposite decisions (a
first release versus a stopped one), so one class decides which of the two an answer is:
only MLflow's own not-found answers mean absent (a lookup returns None); every other failure,
whether an MLflow error, a refused connection or a broken SQLite file, is raised as
`RegistryUnavailableError` (exit 3), naming the registry without its credentials.

MLflow's HTTP client retries a refused connection for minutes by default. Calls to an HTTP
registry made here run with at most two retries, a 1 s backoff and a 30 s request timeout,
unless the user set ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``
or ``MLFLOW_HTTP_REQUEST_TIMEOUT`` themselves; the settings are put back after each call.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from attestflow.errors import BadInputError, RegistryUnavailableError
from attestflow.redact import redact, redact_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

T = TypeVar("T")

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))$")
NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})
"""MLflow's error codes for a model, version, alias or run that does not exist."""
FAST_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
"""MLflow HTTP settings for registry calls, so an unreachable server fails in seconds, not minutes."""
INCOMPLETE = "attestflow.incomplete"
"""Version tag of a release not yet finished: set when the version is created, removed once its gate
verdict is attached; a version still carrying it was left by a release that stopped (or is running)."""
PROMOTED_FROM = "attestflow.promoted_from"
"""Version tag of a copy in another environment's model: ``<env>:<model>/<version>`` it was promoted from."""
ALREADY_EXISTS = frozenset({"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"})
_env_lock = threading.Lock()
_env_users = 0
_env_set: list[str] = []


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/`` URI."""

    name: str
    version: str | None
    alias: str | None

    @property
    def uri(self) -> str:
        """The ``models:/`` URI again."""
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def parse_model_uri(uri: str) -> ModelRef:
    """Parse ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``; anything else is bad input."""
    m = MODEL_URI.match(uri)
    if not m:
        raise BadInputError(f"not a model URI: {uri!r} (expected models:/NAME/VERSION or models:/NAME@ALIAS)")
    return ModelRef(m["name"], m["version"], m["alias"])


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version, as the registry described it."""

    name: str
    version: str
    tags: dict[str, str]
    """The version's tags (digests, release key, flow run id)."""
    run_id: str | None
    """The MLflow run the version was logged from."""
    aliases: tuple[str, ...]
    model_id: str | None = None
    """The MLflow 3 logged model whose artifacts the version serves (None for a version made from a run)."""
    copied_from: str | None = None
    """``models:/NAME/VERSION`` of the version this one is a ``copy_model_version`` of, if it is one."""

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``."""
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class RunData:
    """The params, tags and latest metrics of one MLflow run."""

    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]


class _Absent(Exception):
    """MLflow answered that the thing asked for does not exist."""


def _version(mv: Any) -> ModelVersion:
    return ModelVersion(
        str(mv.name),
        str(mv.version),
        dict(mv.tags),
        mv.run_id or None,
        tuple(mv.aliases or ()),
        getattr(mv, "model_id", None) or _logged_model_id(str(mv.source or "")),
        str(mv.source) if re.fullmatch(r"models:/[^/@]+/\d+", str(mv.source or "")) else None,
    )


def _logged_model_id(source: str) -> str | None:
    """The logged model id in a version's source ``models:/<id>`` (stores that do not fill `model_id`)."""
    found = re.fullmatch(r"models:/(m-[0-9a-f]+)", source)
    return found[1] if found else None


def first_line(e: BaseException) -> str:
    """The first line of an error (for a failed HTTP request, its cause), any URI credentials removed."""
    lines = str(e).strip().splitlines()
    line = lines[0] if lines else type(e).__name__
    if "(Caused by " in line:  # requests' "Max retries exceeded with url: ... (Caused by X(...))"
        line = line.split("(Caused by ", 1)[1].removesuffix(")")
    return redact(line)[:300]


def _shown(uri: str) -> str:
    """`uri` safe to print: credentials removed."""
    return redact_uri(uri)


def _quoted(value: str) -> str:
    if "'" in value:
        raise BadInputError(f"a registry search value cannot contain a quote: {value!r}")
    return f"'{value}'"


@contextmanager
def _fast_failing_http() -> Iterator[None]:
    """Set `FAST_HTTP` (where the user has not) while any registry call runs, then put it back."""
    global _env_users
    with _env_lock:
        if _env_users == 0:
            _env_set[:] = [k for k in FAST_HTTP if k not in os.environ]
            os.environ.update({k: FAST_HTTP[k] for k in _env_set})
        _env_users += 1
    try:
        yield
    finally:
        with _env_lock:
            _env_users -= 1
            if _env_users == 0:
                for key in _env_set:
                    os.environ.pop(key, None)
                _env_set.clear()


class Registry:
    """The MLflow model registry at one tracking URI (tracking and registry on the same store)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._client: MlflowClient | None = None
        self._http = urlsplit(uri).scheme in ("http", "https")

    def __repr__(self) -> str:
        return f"Registry({_shown(self.uri)!r})"

    def _client_for_call(self) -> MlflowClient:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    def _call(self, what: Callable[[MlflowClient], T]) -> T:
        """Run `what` on the client; MLflow's not-found is `_Absent`, any other failure is unavailable."""
        from mlflow.exceptions import MlflowException

        with _fast_failing_http() if self._http else nullcontext():
            try:
                client = self._client_for_call()
            except Exception as e:  # the store cannot even be opened
                raise self._unavailable(e) from e
            try:
                return what(client)
            except MlflowException as e:
                if e.error_code in NOT_FOUND:
                    raise _Absent(first_line(e)) from e
                raise self._unavailable(e) from e
            except Exception as e:  # OSError, requests' and SQLAlchemy's errors: the store failed
                raise self._unavailable(e) from e

    def _lookup(self, what: Callable[[MlflowClient], T]) -> T | None:
        """Run `what`; None when MLflow says the thing does not exist."""
        try:
            return self._call(what)
        except _Absent:
            return None

    def _must(self, what: Callable[[MlflowClient], T]) -> T:
        """Run `what` on something that must exist (a write, a search): not-found is bad input."""
        try:
            return self._call(what)
        except _Absent as e:
            raise BadInputError(f"the model registry at {_shown(self.uri)} refused: {redact(str(e))}") from e

    def _unavailable(self, e: BaseException) -> RegistryUnavailableError:
        return RegistryUnavailableError(f"the model registry at {_shown(self.uri)} failed: {first_line(e)}")

    def ping(self) -> None:
        """Raise `RegistryUnavailableError` unless the registry answers a cheap query."""
        self._must(lambda c: c.search_registered_models(max_results=1))

    def version(self, ref: ModelRef | str) -> ModelVersion | None:
        """The version a ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` names; None if absent."""
        ref = parse_model_uri(ref) if isinstance(ref, str) else ref
        alias, number = ref.alias, str(ref.version)
        found = self._lookup(
            lambda c: (
                c.get_model_version_by_alias(ref.name, alias)
                if alias
                else c.get_model_version(ref.name, number)
            )
        )
        return _version(found) if found is not None else None

    def alias_version(self, model_name: str, alias: str) -> str | None:
        """The version number `alias` points at; None when the model or the alias does not exist."""
        found = self.version(ModelRef(model_name, None, alias))
        return found.version if found is not None else None

    def aliases(self, model_name: str) -> dict[str, str]:
        """Alias -> version of the registered model (empty when there is no such model)."""
        model = self._lookup(lambda c: c.get_registered_model(model_name))
        return {str(a): str(v) for a, v in (model.aliases if model is not None else {}).items()}

    def find_versions(self, model_name: str | None = None, **tags: str) -> list[ModelVersion]:
        """The versions (of `model_name`, if given) whose tags have these values, oldest first."""
        clauses = [f"tags.{k} = {_quoted(v)}" for k, v in tags.items()]
        if model_name is not None:
            clauses.insert(0, f"name = {_quoted(model_name)}")
        return self._search(" and ".join(clauses))

    def versions_of_run(self, model_name: str, run_id: str) -> list[ModelVersion]:
        """The versions of `model_name` logged from MLflow run `run_id`, oldest first."""
        return self._search(f"name = {_quoted(model_name)} and run_id = {_quoted(run_id)}")

    def _search(self, query: str) -> list[ModelVersion]:
        """Every version a model version search finds, oldest first."""
        found = self._must(
            lambda c: _all_pages(lambda token: c.search_model_versions(query, page_token=token))
        )
        return sorted((_version(mv) for mv in found), key=lambda v: int(v.version))

    def model_tags(self) -> dict[str, dict[str, str]]:
        """Registered model name -> its tags, for every registered model."""
        found = self._must(lambda c: _all_pages(lambda token: c.search_registered_models(page_token=token)))
        return {str(m.name): dict(m.tags) for m in found}

    def run(self, run_id: str) -> RunData | None:
        """The params, tags and metrics of run `run_id`; None if there is no such run."""
        run = self._lookup(lambda c: c.get_run(run_id))
        if run is None:
            return None
        return RunData(dict(run.data.params), dict(run.data.tags), dict(run.data.metrics))

    def download_uri(self, model_name: str, version: str) -> str | None:
        """Where the artifacts of one model version are stored; None if there is no such version."""
        return self._lookup(lambda c: str(c.get_model_version_download_uri(model_name, version)))

    def set_alias(self, model_name: str, alias: str, version: str) -> None:
        """Point `alias` at `version` (only `attestflow.aliases` moves serving aliases)."""
        self._must(lambda c: c.set_registered_model_alias(model_name, alias, version))

    def delete_alias(self, model_name: str, alias: str) -> None:
        """Remove `alias` from the registered model."""
        self._must(lambda c: c.delete_registered_model_alias(model_name, alias))

    def set_model_tag(self, model_name: str, key: str, value: str) -> None:
        """Set a tag on the registered model."""
        self._must(lambda c: c.set_registered_model_tag(model_name, key, value))

    def set_version_tag(self, model_name: str, version: str, key: str, value: str) -> None:
        """Set a tag on one model version."""
        self._must(lambda c: c.set_model_version_tag(model_name, version, key, value))

    def delete_version_tag(self, model_name: str, version: str, key: str) -> None:
        """Remove a tag from one model version (nothing happens when it has none)."""
        self._must(lambda c: c.delete_model_version_tag(model_name, version, key))

    def create_version(
        self, model_name: str, model_id: str, run_id: str, tags: dict[str, str]
    ) -> ModelVersion:
        """Register logged model `model_id` as a new version of `model_name`, with `tags`, in one call.

        The version and its tags are one write of the registry, so no crash leaves a version
        without the tags that identify it; the registered model is created first if need be.
        """

        def create(c: MlflowClient) -> Any:
            from mlflow.exceptions import MlflowException

            from attestflow.tracking import fluent_uri

            try:
                c.create_registered_model(model_name)
            except MlflowException as e:
                if e.error_code not in ALREADY_EXISTS:
                    raise
            with fluent_uri(self.uri):  # a local store looks the logged model up at the global URI
                return c.create_model_version(
                    model_name, f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id
                )

        return _version(self._must(create))

    def copy_version(self, source: ModelRef, target_name: str) -> ModelVersion:
        """``MlflowClient.copy_model_version``: `source` (in this registry) as a new version of `target_name`.

        The copy keeps the source's tags, run and logged model (its artifacts are the source's).
        """
        return _version(self._must(lambda c: c.copy_model_version(source.uri, target_name)))

    def set_version_description(self, model_name: str, version: str, description: str) -> None:
        """``MlflowClient.update_model_version``: the version's description (the model card's markdown)."""
        self._must(lambda c: c.update_model_version(model_name, version, description=description))

    def log_run_artifacts(self, run_id: str, local_dir: Path, artifact_path: str) -> None:
        """Add the files of `local_dir` under `artifact_path` to the run `run_id`'s artifacts."""
        self._must(lambda c: c.log_artifacts(run_id, str(local_dir), artifact_path))

    def add_version_artifacts(
        self, model_name: str, version: str, local_dir: Path, artifact_path: str
    ) -> None:
        """Add the files of `local_dir` under `artifact_path` to what the model version serves."""
        found = self.version(ModelRef(model_name, version, None))
        while found is not None and found.model_id is None and found.copied_from is not None:
            found = self.version(found.copied_from)  # a copy serves its source's logged model
        if found is None or found.model_id is None:
            raise BadInputError(f"models:/{model_name}/{version} has no logged model to add artifacts to")
        model_id = found.model_id
        self._must(lambda c: c.log_model_artifacts(model_id, str(local_dir), artifact_path))


def _all_pages(search: Callable[[str | None], Any]) -> list[Any]:
    """Every result of a paged MLflow search."""
    found: list[Any] = []
    token: str | None = None
    while True:
        page = search(token)
        found.extend(page)
        token = page.token
        if not token:
            return found
