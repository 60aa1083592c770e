"""`attestflow rollback-drill`: rehearse a rollback of an environment's champion, on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import render
from flows.cli.common import ConfigOpt

EnvOpt = Annotated[
    str | None,
    typer.Option("--env", help="Environment whose champion to drill (default: the release config's model)."),
]
EnvironmentsOpt = Annotated[
    Path, typer.Option("--environments", help="Environments YAML (default: configs/environments.yaml).")
]


def rollback_drill(
    env: EnvOpt = None,
    environments: EnvironmentsOpt = Path("configs/environments.yaml"),
    config: ConfigOpt = None,
) -> None:
    """Verify @previous and the last approved versions, move a drill alias there and back: exit 1 on failure."""
    from attestflow.config import default_config_path
    from flows.rollback_drill import rollback_drill as drill

    state = drill(
        environment=env,
        environments_path=str(environments),
        config_path=str(config or default_config_path()),
        return_state=True,
    )
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    render.note(
        f"rollback drill of {result.model_name} passed in {result.seconds:.1f} s: "
        f"@drill -> v{result.previous} -> v{result.champion}; verified "
        + ", ".join(f"v{v}" for v in result.versions)
    )
