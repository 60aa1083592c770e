"""A stage is retried on an error the world may fix, never on one its inputs or code raise every time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import requests
from mlflow.exceptions import MlflowException
from prefect import flow, task
from prefect.states import exception_to_failed_state

from attestflow.config import StageConfig
from attestflow.errors import BadInputError, GateFailedError, RegistryUnavailableError
from flows.stages import _retryable, stage

CALLS: list[str] = []


@task(name="raises")
def raises(error: BaseException) -> None:
    CALLS.append(type(error).__name__)
    raise error


@flow(name="retry-rule")
def run_stage(error: BaseException) -> None:
    stage(raises, StageConfig(retries=2, retry_delay_s=0))(error)


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.mark.parametrize(
    ("error", "runs"), [(IndexError("Target 2 is out of bounds"), 1), (OSError("busy"), 3)]
)
def test_a_stage_raising_index_error_runs_once_and_one_raising_os_error_is_retried(
    prefect_harness: None, error: BaseException, runs: int
) -> None:
    CALLS.clear()
    with pytest.raises(type(error)):
        run_stage(error)
    assert len(CALLS) == runs and set(CALLS) == {type(error).__name__}


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (IndexError("Target 2 is out of bounds"), False),
        (KeyError("label"), False),
        (ValueError("multi_class must be in ('ovo', 'ovr')"), False),
        (TypeError("unsupported operand"), False),
        (AttributeError("no attribute 'x'"), False),
        (ZeroDivisionError("division by zero"), False),
        (NotImplementedError("later"), False),
        (AssertionError("shape"), False),
        (BadInputError("column 'x' is missing"), False),
        (GateFailedError(["gate said no"]), False),
        (OSError("disk busy"), True),
        (ConnectionError("connection reset"), True),
        (TimeoutError("timed out"), True),
        (RegistryUnavailableError("registry down"), True),
        (  # what MLflow's REST client raises when the tracking server refuses the connection
            MlflowException(
                "API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/log-batch failed with exception"
                " HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded (Caused by"
                " NewConnectionError('Failed to establish a new connection: [Errno 111] Connection refused'))"
            ),
            True,
        ),
        (requests.exceptions.JSONDecodeError("Expecting value", "<html>", 0), True),
        (RuntimeError("simulated worker loss"), True),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_deterministic_errors_are_never_retried_and_infrastructure_errors_are(
    error: BaseException, retried: bool
) -> None:
    state = asyncio.run(exception_to_failed_state(error))
    assert _retryable(raises, None, state) is retried
