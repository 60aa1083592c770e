"""Commands that release or evaluate a model: `run`, `demo` and `evaluate`.

Prefect is imported only after the workspace has pointed it at its state, since it reads its
settings at import; the release flow is called in one place, `release_state`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from attestflow.errors import BadInputError, GateFailedError, UnavailableError
from flows.cli import render
from flows.cli.common import ConfigOpt, EnvironmentsOpt, EnvOpt, SetOpt, config_of, first_line

EXPECTED = (BadInputError, GateFailedError, UnavailableError)
"""Failures the exit codes name: logged as one line, not a traceback, since none is a bug."""


class _ExpectedFailureFilter(logging.Filter):
    """Log a bad input, a gate's "no" or an outage as one line, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], EXPECTED):
            record.msg = f"{record.getMessage().split(chr(10))[0]}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def _quiet_expected_failures() -> None:
    filt = _ExpectedFailureFilter()
    for name in ("prefect", ""):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(filt)


def release_state(
    config: Path, overrides: list[str], env: str | None = None, environments: Path | None = None
) -> Any:
    """Run the release flow and return its final state; a flow run that cannot start is an outage."""
    from attestflow.environments import DEFAULT_PATH as DEFAULT_ENVIRONMENTS
    from attestflow.redact import hide_overrides, secret_overrides
    from flows.cli.server import api_for_run
    from flows.heartbeat import prompt_heartbeats
    from flows.release import release

    _quiet_expected_failures()
    shown, hidden = hide_overrides(overrides)
    try:
        # Run parameters are stored by Prefect: no credentials in them.
        with secret_overrides(hidden), api_for_run(), prompt_heartbeats():
            return release(
                config_path=str(config),
                overrides=shown,
                environment=env,
                environments_path=str(environments or DEFAULT_ENVIRONMENTS),
                return_state=True,
            )
    except EXPECTED:
        raise
    except Exception as e:  # the orchestrator itself failed (no API, no database): not a gate's "no"
        raise UnavailableError(f"the release flow run did not start: {first_line(e)}") from e


def _building(stage: str, path: Path) -> None:
    render.step(f"dvc repro {stage}", f"{path} is a pipeline output not yet built here")


def run_release(
    config: Path, overrides: list[str], env: str | None = None, environments: Path | None = None
) -> None:
    """Check the inputs, run the release flow, and print its summary or raise why it stopped."""
    from attestflow.preflight import preflight
    from attestflow.workspace import Workspace

    started = time.perf_counter()
    cfg = config_of(config, overrides, env, environments)
    preflight(cfg, on_repro=_building)
    Workspace.at(cfg.workspace).activate()
    state = release_state(config, overrides, env, environments)
    if state.is_completed():
        from attestflow.tracking import tracking_uri

        uri = tracking_uri(cfg.register.tracking_uri, Workspace.at(cfg.workspace))
        render.summary(state.result(), time.perf_counter() - started, uri)
        return
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, EXPECTED):
        raise exc
    render.failed("release", exc, "see the Prefect run log")
    raise typer.Exit(1)


def run(
    config: ConfigOpt = None, set_: SetOpt = None, env: EnvOpt = None, environments: EnvironmentsOpt = None
) -> None:
    """Run the release flow on the configured data and model (into the environment `--env`, when named)."""
    from attestflow.config import default_config_path

    run_release(config or default_config_path(), set_ or [], env, environments)


def demo(set_: SetOpt = None) -> None:
    """Build the bundled example's data with `dvc repro`, then release it."""
    from attestflow.preflight import DEMO_CONFIG, reproduce, require_project_root

    require_project_root(Path("."))
    render.step("dvc repro", "example data and base checkpoint")
    reproduce(Path("."))
    run_release(DEMO_CONFIG, set_ or [])


ModelArg = Annotated[str, typer.Argument(help="An ONNX file, or models:/NAME/VERSION or models:/NAME@ALIAS.")]
PolicyOpt = Annotated[Path | None, typer.Option("--policy", help="Gate policy YAML (default: gates.policy).")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="Data file (default: data.path of the config).")]
CheckpointOpt = Annotated[
    Path | None, typer.Option("--checkpoint", help="Torch checkpoint of the model, for the FGSM attack.")
]


def evaluate(
    model: ModelArg,
    policy: PolicyOpt = None,
    data: DataOpt = None,
    config: ConfigOpt = None,
    checkpoint: CheckpointOpt = None,
) -> None:
    """Run the gate suite alone on a model: exit 0 when every gate passes, 1 when one says no."""
    from attestflow.config import default_config_path
    from attestflow.preflight import evaluation_inputs
    from attestflow.workspace import Workspace

    cfg, gate_policy = evaluation_inputs(config or default_config_path(), policy, data, checkpoint)
    Workspace.at(cfg.workspace).activate()
    from flows.evaluate import evaluate as evaluate_model

    report = evaluate_model(model, cfg, gate_policy, checkpoint)
    render.gates(report)
    if not report.passed:
        render.refused("gates said no", report.failures())
        raise typer.Exit(1)
