"""How the release body runs a stage: as a Prefect task, or as a plain call.

The release body (`flows.release.run_release`) is written once and takes an `Invoke`: the
flow passes `stage`, which gives each task the retries, retry delay, timeout and cache of its
config section (`resumable` also keeps every result for a suspended run's resumption); the
benchmark's bare script passes `plain_stage`, which calls the function
inside the task and nothing else. Either way the same stages run in the same order with the
same arguments, so the comparison measures the orchestration and nothing more. `StageTracker`
wraps either and remembers the stage invoked last, which a failed release's audit entry names.
A release into an environment says so on the dashboard: its run name starts with the
environment's name (`run_name`) and it and its task runs are tagged ``env:<name>`` (`environment_tags`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

from prefect import Task, get_client, tags
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.transactions import get_transaction
from prefect.utilities.names import generate_slug

from attestflow.caching import RunPosition, StageCache
from attestflow.config import StageConfig
from attestflow.errors import BadInputError, GateFailedError, UnavailableError
from attestflow.redact import scrubbed

P = ParamSpec("P")
R = TypeVar("R")


class Invoke(Protocol):
    """Turns a stage's task and its config section into the callable the release body calls."""

    def __call__(
        self, t: Task[P, R], cfg: StageConfig, cache: StageCache | None = None
    ) -> Callable[P, R]: ...


DETERMINISTIC: tuple[type[BaseException], ...] = (
    BadInputError,
    GateFailedError,
    ArithmeticError,
    AssertionError,
    AttributeError,
    LookupError,
    NameError,
    NotImplementedError,
    TypeError,
    ValueError,
)
"""Errors that the same inputs and code raise again: bad input, a "no", a programming error."""

INFRASTRUCTURE: tuple[type[BaseException], ...] = (OSError, UnavailableError)
"""Errors of the world around the stage (connections, timeouts, files, services): retried."""


def _retryable(task: Task[Any, Any], task_run: Any, state: Any) -> bool:
    """Retry what the world may fix by the next try, never what the inputs or the code raise every time.

    A retry of a deterministic error only repeats it, its traceback and its delay, and hides the
    one-line reason behind them (an `IndexError` of a label out of range, a `ValueError` of an
    unsupported shape). Infrastructure errors are retried even when they are also a
    `ValueError` (`requests`' JSON errors are both); errors of unknown kind (MLflow's,
    SQLAlchemy's, HTTP clients', a `RuntimeError` of a lost worker) are retried as before.
    """
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, INFRASTRUCTURE) or not isinstance(exc, DETERMINISTIC)


def stage(t: Task[P, R], cfg: StageConfig, cache: StageCache | None = None) -> Task[P, R]:
    """The task `t` with the retries, retry delay and timeout of its config section.

    With `cache`, its result is cached by content (see `attestflow.caching`); else never.
    """
    return _configured(t, cfg, cache.task_options(t.name) if cache else {"cache_policy": NO_CACHE})


def _configured(t: Task[P, R], cfg: StageConfig, caching: dict[str, Any]) -> Task[P, R]:
    """The task `t` with the retries, retry delay and timeout of `cfg` and the options `caching`."""
    configured = t.with_options(
        retries=cfg.retries,
        retry_delay_seconds=cfg.retry_delay_s,
        timeout_seconds=cfg.timeout_s,
        retry_condition_fn=_retryable,
        **caching,
    )
    # Credentials leave a stage's exceptions before Prefect stores the message and logs the traceback.
    configured.fn = scrubbed(t.fn)
    return configured


def resumable(results: Path) -> Invoke:
    """`stage`, with every stage's result also kept in `results` under its place in the flow run.

    For a release that may be suspended (``approve.wait: suspend``): resumed, the run starts
    again from the top, and each stage that completed before the suspension is answered from
    its persisted result (`attestflow.caching.RunPosition`) instead of running again; the
    content-keyed stages keep their content key, which answers them as well.
    """

    calls: Counter[str] = Counter()

    def invoke(t: Task[P, R], cfg: StageConfig, cache: StageCache | None = None) -> Task[P, R]:
        calls[t.name] += 1
        if cache is not None:
            return stage(t, cfg, cache)
        caching = {
            "cache_policy": RunPosition(position=f"{t.name}-{calls[t.name]}"),
            "persist_result": True,
            "result_storage": results,
            "result_serializer": "json",
        }
        return _configured(t, cfg, caching)

    return invoke


class StageTracker:
    """An `Invoke` that remembers the stage the release body invoked last, to say where a release stopped."""

    def __init__(self, invoke: Invoke) -> None:
        self._invoke = invoke
        self.current = "start"

    def __call__(self, t: Task[P, R], cfg: StageConfig, cache: StageCache | None = None) -> Callable[P, R]:
        self.current = t.name
        return self._invoke(t, cfg, cache)


def plain_stage(t: Task[P, R], cfg: StageConfig, cache: StageCache | None = None) -> Callable[P, R]:
    """The function inside the task `t`, called once, without retries, timeout or cache.

    Inside an open transaction its rollback hooks are staged as a task run's would be, so
    a later failure undoes it the same way (a promotion, for one).
    """

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        result = scrubbed(t.fn)(*args, **kwargs)
        txn = get_transaction()
        if txn is not None and t.on_rollback_hooks:
            txn.stage(result, on_rollback_hooks=list(t.on_rollback_hooks))
        return result

    return call


def run_name() -> str:
    """A flow run's name: Prefect's usual two words, after the environment named by its parameters."""
    env = flow_run.parameters.get("environment")
    return f"{env}-{generate_slug(2)}" if env else generate_slug(2)


@contextmanager
def environment_tags(environment: str | None) -> Iterator[None]:
    """Tag the flow run in progress ``env:<environment>``, and the task runs started inside the block."""
    if environment is None:
        yield
        return
    tag = f"env:{environment}"
    if flow_run.id:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, tags=sorted({*client.read_flow_run(flow_run.id).tags, tag}))
    with tags(tag):
        yield
