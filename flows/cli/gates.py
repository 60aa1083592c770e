"""The `gates` commands: how close past releases came to each gate's threshold."""

from __future__ import annotations

from typing import Annotated

import typer

from attestflow.errors import BadInputError
from flows.cli import render
from flows.cli.common import ConfigOpt, registry_uri, workspace_of

app = typer.Typer(no_args_is_help=True, help="The release gates: calibration of their thresholds.")


@app.command()
def calibrate(
    model: Annotated[
        str | None, typer.Option("--model", help="Registered model name (default: model_name).")
    ] = None,
    last: Annotated[int, typer.Option("--last", min=1, help="How many of the newest versions to read.")] = 20,
    config: ConfigOpt = None,
) -> None:
    """Per gate, the min/median/max margin over the last releases: which gates never come close.

    Headroom is the smallest margin as a fraction of the threshold; a gate that never failed
    with at least 50% headroom is marked loose.
    """
    cfg, ws = workspace_of(config)
    ws.activate()
    from tasks.gates.calibrate import calibrate as margins_of

    name = model or cfg.model_name
    summaries = margins_of(registry_uri(cfg, ws), name, last)
    if not summaries:
        raise BadInputError(f"no gate margins recorded for model {name!r}: release it first")
    render.margins(summaries, name, last)
