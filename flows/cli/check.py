"""The `check` command: secrets, model files, code rules, templates and the supply chain, before a merge."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from flows.cli import render


def check(
    path: Annotated[Path, typer.Argument(help="A folder in the git repository to check.")] = Path("."),
    base: Annotated[
        str | None, typer.Option("--base", help="Check only the change base...HEAD (e.g. origin/main).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as one JSON list.")] = False,
    sarif: Annotated[
        Path | None, typer.Option("--sarif", help="Also write the findings as SARIF 2.1.0.")
    ] = None,
    only: Annotated[
        str | None, typer.Option("--only", help="Comma-separated checks to run (default: every enabled one).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Check config YAML (default: configs/check.yaml).")
    ] = None,
    update_advisories: Annotated[
        bool, typer.Option("--update-advisories", help="First fetch OSV advisories for every lock pin.")
    ] = False,
) -> None:
    """Exit 0 clean, 1 with findings (each with its file, line and what to do), 2 on bad input."""
    from attestflow import __version__
    from attestflow.checks.config import load_check_config
    from attestflow.checks.gitfiles import repo_root
    from attestflow.checks.runner import refresh_advisories, run_named, selected
    from attestflow.checks.sarif import to_sarif

    root = repo_root(path)
    cfg = load_check_config(root, config)
    names = selected(cfg, [n.strip() for n in only.split(",") if n.strip()] if only else None)
    if update_advisories:
        render.note(f"advisories: {refresh_advisories(root, cfg)} record(s) fetched")
    t0 = time.perf_counter()
    run = run_named(root, base, cfg, names)
    if sarif is not None:
        sarif.write_text(json.dumps(to_sarif(run.findings, run.ran, __version__), indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps([f.as_json() for f in run.findings], indent=2))
    else:
        render.check_run(run, time.perf_counter() - t0)
    if run.findings:
        raise typer.Exit(1)
