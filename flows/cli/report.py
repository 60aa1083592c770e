"""The `report` command: a compliance framework's controls mapped to a model version's verified evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import (
    ConfigOpt,
    EnvironmentsOpt,
    EnvOpt,
    audit_log,
    env_trust,
    registry_uri,
    workspace_of,
)


def report(
    model_uri: Annotated[
        str,
        typer.Argument(
            metavar="TARGET", help="models:/NAME/VERSION, models:/NAME@ALIAS, or a downloaded model folder"
        ),
    ],
    framework: Annotated[
        str, typer.Option(help="The mapping in compliance.mappings: eu-ai-act or nist-ai-rmf.")
    ],
    fmt: Annotated[str, typer.Option("--format", help="md, html or json.")] = "md",
    out: Annotated[Path | None, typer.Option(help="Write the report here instead of printing it.")] = None,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    environments: EnvironmentsOpt = None,
) -> None:
    """Verify the version now, then judge each control verified, declared or missing; a version that does not
    verify gets no report (exit 1)."""
    from attestflow.compliance.render import FORMATS, render
    from attestflow.compliance.report import compliance_report
    from attestflow.errors import BadInputError
    from attestflow.keys import trusted_public_key

    if fmt not in FORMATS:
        raise BadInputError(f"--format takes one of {', '.join(FORMATS)}, not {fmt!r}")
    cfg, ws = workspace_of(config, env, environments)
    made = compliance_report(
        model_uri,
        framework,
        cfg,
        tracking_uri=registry_uri(cfg, ws),
        public_key=trusted_public_key(cfg.sign.public_key, ws.root),
        audit=audit_log(cfg, ws),
        trust=env_trust(env, environments),
    )
    text = render(made, fmt)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        counts = ", ".join(f"{n} {s}" for s, n in made.counts.items())
        typer.echo(
            f"{made.mapping.spec.framework} report of {made.gathered.target} ({counts}) written to {out}"
        )
