"""Commands between environments: `promote MODEL_URI --to ENV`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from flows.cli import render
from flows.cli.common import ConfigOpt, config_of, first_line

EnvironmentsOpt = Annotated[
    Path | None,
    typer.Option(
        "--environments",
        help="Environments YAML (default: $ATTESTFLOW_ENVIRONMENTS or configs/environments.yaml).",
    ),
]


def promote(
    model_uri: Annotated[
        str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS in the source env.")
    ],
    to: Annotated[str, typer.Option("--to", help="The environment to promote into (e.g. prod).")],
    environments: EnvironmentsOpt = None,
    config: ConfigOpt = None,
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")] = "",
) -> None:
    """Promote a verified version of ENV's source environment into ENV: gates, approval, copy, canary.

    Exit 1 when a step says no (reasons printed, audited in ENV's log), 2 bad input, 3 unreachable.
    """
    from attestflow.config import default_config_path
    from attestflow.env_promotion import environments_path, load_environments, target_env
    from attestflow.errors import UnavailableError
    from attestflow.registry import parse_model_uri
    from attestflow.workspace import Workspace
    from flows.cli.releases import EXPECTED, _quiet_expected_failures

    started = time.perf_counter()
    config = config or default_config_path()
    parse_model_uri(model_uri)
    target_env(load_environments(environments_path(environments)), to)  # bad input before any flow run
    Workspace.at(config_of(config).workspace).activate()
    from flows.env_promote import env_promote

    _quiet_expected_failures()
    try:
        state = env_promote(
            model_uri=model_uri,
            to=to,
            environments=str(environments_path(environments)),
            config_path=str(config),
            reason=reason,
            return_state=True,
        )
    except EXPECTED:
        raise
    except Exception as e:  # the orchestrator itself failed: not a step's "no"
        raise UnavailableError(f"the env-promote flow run did not start: {first_line(e)}") from e
    if state.is_completed():
        done = state.result()
        render.note(
            f"{done.source} -> {done.environment}: {done.model_name} v{done.version} is "
            f"@{done.outcome.promotion.alias if done.outcome.promotion else '?'} "
            f"({time.perf_counter() - started:.1f} s)"
        )
        return
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, EXPECTED):
        raise exc
    render.failed(
        "promotion",
        exc if isinstance(exc, BaseException) else RuntimeError(str(exc)),
        "see the Prefect run log",
    )
    raise typer.Exit(1)
