"""The `audit` commands: check the workspace's hash-chained audit log, show who moved what, adopt outside moves."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli import render
from flows.cli.common import ConfigOpt, EnvironmentsOpt, EnvOpt, audit_log, registry_uri, workspace_of

app = typer.Typer(no_args_is_help=True, help="The workspace's hash-chained audit log.")


@app.command("verify")
def audit_verify(config: ConfigOpt = None, env: EnvOpt = None, environments: EnvironmentsOpt = None) -> None:
    """Check the audit log's hash chain and signed head, and each model's aliases against it; exit 1 on any."""
    from attestflow.alias_drift import alias_drift, audited_models
    from attestflow.audit import log_identity, registry_anchors
    from attestflow.registry import Registry

    cfg, ws = workspace_of(config, env, environments)
    log = audit_log(cfg, ws)
    uri = registry_uri(cfg, ws)
    anchors = registry_anchors(uri, log_identity(log.store))
    ok, line, reason = log.verify(anchors)
    if not ok:
        render.audit_broken(line, reason, log.store.location)
        raise typer.Exit(1)
    registry = Registry(uri)
    drift = [
        d
        for name in dict.fromkeys([*audited_models(log.entries()), cfg.model_name])
        for d in alias_drift(
            name,
            alias=cfg.promote.alias,
            previous_alias=cfg.promote.previous_alias,
            registry=registry,
            audit=log,
        )
    ]
    if drift:
        render.alias_drift(drift)
        raise typer.Exit(1)
    render.audit_ok(reason, len(anchors), log.store.location)


@app.command("adopt")
def audit_adopt(
    model: Annotated[str, typer.Argument(help="Registered model whose registry aliases to adopt.")],
    reason: Annotated[
        str, typer.Option(help="Why the move outside attestflow is accepted, for the audit trail.")
    ],
    config: ConfigOpt = None,
    env: EnvOpt = None,
    environments: EnvironmentsOpt = None,
) -> None:
    """Accept aliases moved outside attestflow as audited, so releases and rollbacks of MODEL proceed."""
    from attestflow.alias_drift import adopt
    from attestflow.registry import Registry

    cfg, ws = workspace_of(config, env, environments)
    adopted = adopt(
        model,
        reason,
        alias=cfg.promote.alias,
        previous_alias=cfg.promote.previous_alias,
        registry=Registry(registry_uri(cfg, ws)),
        audit=audit_log(cfg, ws),
    )
    render.adopted(model, adopted)


@app.command("show")
def audit_show(
    config: ConfigOpt = None,
    model: Annotated[str | None, typer.Option(help="Only this registered model.")] = None,
    promotions: Annotated[
        bool, typer.Option("--promotions", help="Only alias moves: which version was champion when.")
    ] = False,
    all_events: Annotated[
        bool, typer.Option("--all", hidden=True, help="Deprecated: every event is the default.")
    ] = False,
    env: EnvOpt = None,
    environments: EnvironmentsOpt = None,
) -> None:
    """Every event of the workspace's models (releases started, refused and failed, alias moves), who and why."""
    from attestflow.audit import champion_history, model_events

    cfg, ws = workspace_of(config, env, environments)
    log = audit_log(cfg, ws)
    ok, line, reason = log.verify()
    if not ok:
        render.audit_broken(line, reason, log.store.location, warning=True)
    skipped: list[int] = []
    entries = log.entries(skipped=skipped)
    if skipped:
        render.audit_skipped(skipped)
    rows = champion_history(entries, model) if promotions else model_events(entries, model)
    render.audit_table(rows, model)
    if not ok:
        raise typer.Exit(1)
