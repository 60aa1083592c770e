"""`gates.task_runner`: threads by default, any Prefect TaskRunner by import path, bad paths refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from typer.testing import CliRunner

from attestflow.config import GatesConfig, load_config
from attestflow.errors import ConfigError
from flows.cli import app

CONFIG = Path(__file__).resolve().parents[2] / "configs/release.yaml"


def test_threads_are_the_default_and_an_import_path_names_any_task_runner() -> None:
    runner = GatesConfig(max_workers=3).make_task_runner()
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 3
    cfg = load_config(
        CONFIG,
        [
            "gates.task_runner=prefect.task_runners:ProcessPoolTaskRunner",
            "gates.task_runner_options={max_workers: 2}",
        ],
    )
    runner = cfg.gates.make_task_runner()
    assert isinstance(runner, ProcessPoolTaskRunner) and runner._max_workers == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["gates.task_runner=prefect_dask:DaskTaskRunner"],
            "gates.task_runner: Value error, cannot import 'prefect_dask' (No module named 'prefect_dask')",
        ),
        (["gates.task_runner=dask"], "the import path 'package.module:ClassName' of a Prefect TaskRunner"),
        (
            ["gates.task_runner=prefect.task_runners:Nope"],
            "prefect.task_runners:Nope is not a Prefect TaskRunner",
        ),
        (["gates.task_runner=os.path:join"], "os.path:join is not a Prefect TaskRunner class"),
        (
            ["gates.task_runner_options={max_workers: 2}"],
            "task_runner_options are for an import-path task_runner",
        ),
        (
            [
                "gates.task_runner=prefect.task_runners:ProcessPoolTaskRunner",
                "gates.task_runner_options={address: 'tcp://x:8786'}",
            ],
            "unexpected keyword argument 'address'",
        ),
    ],
)
def test_a_task_runner_that_cannot_be_made_is_refused_at_load_time(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(CONFIG, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_cli_refuses_an_unresolvable_task_runner_with_exit_2() -> None:
    args = ["run", "--config", str(CONFIG), "--set", "gates.task_runner=prefect_ray:RayTaskRunner"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "gates.task_runner" in result.output and "cannot import 'prefect_ray'" in result.output
    assert "Traceback" not in result.output and result.output.strip().count("\n") <= 2
