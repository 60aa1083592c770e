"""The `audit` commands: check the workspace's hash-chained audit log, and show who moved what."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli import render
from flows.cli.common import ConfigOpt, registry_uri, workspace_of

app = typer.Typer(no_args_is_help=True, help="The workspace's hash-chained audit log.")


@app.command("verify")
def audit_verify(config: ConfigOpt = None) -> None:
    """Check the audit log's hash chain; exit 1 naming the first bad line."""
    from attestflow.audit import AuditLog, registry_anchors

    cfg, ws = workspace_of(config)
    log = AuditLog.of(ws.root)
    anchors = registry_anchors(registry_uri(cfg, ws))
    ok, line, reason = log.verify(anchors)
    if not ok:
        render.audit_broken(line, reason, log.path)
        raise typer.Exit(1)
    render.audit_ok(reason, len(anchors), log.path)


@app.command("show")
def audit_show(
    config: ConfigOpt = None,
    model: Annotated[str | None, typer.Option(help="Only this registered model.")] = None,
    all_events: Annotated[bool, typer.Option("--all", help="Every event, not only alias moves.")] = False,
) -> None:
    """Which version was champion when, who moved it, and why."""
    from attestflow.audit import AuditLog, champion_history

    _, ws = workspace_of(config)
    log = AuditLog.of(ws.root)
    ok, line, reason = log.verify()
    if not ok:
        render.audit_broken(line, reason, log.path, warning=True)
    skipped: list[int] = []
    entries = log.entries(skipped=skipped)
    if skipped:
        render.audit_skipped(skipped)
    rows = (
        [x for x in entries if model in (None, x["model"])]
        if all_events
        else champion_history(entries, model)
    )
    render.audit_table(rows, model)
    if not ok:
        raise typer.Exit(1)
