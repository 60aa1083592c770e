"""The `init` command: the files a release of the user's own table needs, written from the table.

A few lines around `attestflow.scaffold.init_project`; the library is imported in the command
body so that `--help` loads neither torch nor DVC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli import render


def init(
    data: Annotated[
        Path, typer.Option("--data", help="The table: a CSV or Parquet file inside this folder.")
    ],
    label: Annotated[str, typer.Option("--label", help="The column the model predicts.")],
    sensitive: Annotated[
        str | None, typer.Option("--sensitive", help="The groups the fairness gate compares (optional).")
    ] = None,
    task: Annotated[
        str, typer.Option("--task", help="What the model does: classification.")
    ] = "classification",
    name: Annotated[
        str | None, typer.Option("--name", help="Model name and config file stem (default: the data file's).")
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            "--features", help="Input columns, comma-separated (default: all but label and sensitive)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing config files.")] = False,
) -> None:
    """Write a release config, a gate policy and an expectation suite for a table, and track it with DVC."""
    from attestflow.scaffold import init_project

    chosen = None if features is None else [f.strip() for f in features.split(",") if f.strip()]
    result = init_project(
        data, label, sensitive=sensitive, task=task, name=name, features=chosen, force=force, root=Path(".")
    )
    render.initialised(result)
