"""The `attestflow` command line: its commands, and the one place where errors become exit codes.

Exit codes are a contract: 0 done, 1 a gate or a verification said no (reasons printed),
2 bad input or configuration (one line, no traceback), 3 could not run: the orchestrator,
the registry or the DVC remote could not be reached, so that a CI job can tell a refusal
from an outage. Commands import the library inside their bodies, so that `--help`,
`--version` and shell completion load neither torch, Prefect nor MLflow.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from attestflow.errors import GateFailedError, exit_code_of
from flows.cli import (
    audit,
    check,
    drill,
    environments,
    gates,
    promotion,
    releases,
    render,
    report,
    server,
    setup,
    verification,
)

REFUSALS = {
    "run": "release refused",
    "demo": "release refused",
    "rollback": "rollback refused",
    "approve": "approval refused",
    "reject": "rejection refused",
    "rollback-drill": "rollback drill failed",
    "promote": "promotion refused",
    "report": "report refused",
}
"""How each command names a gate's or a verification's "no"; the others say "refused"."""


def exit_code(e: BaseException, command: str | None = None) -> int | None:
    """Print a domain error as the contract says and return its exit code; None for any other error."""
    code = exit_code_of(e)
    if isinstance(e, GateFailedError):
        render.refused(REFUSALS.get(command or "", "refused"), e.reasons)
    elif code == 2:
        render.error(str(e))
    elif code == 3:
        render.could_not_run(str(e))
    return code


class _Commands(TyperGroup):
    """The root command group: whatever a command raises passes through `exit_code`."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context class is private
        try:
            return super().invoke(ctx)
        except Exception as e:
            code = exit_code(e, ctx.invoked_subcommand)
            if code is None:
                raise
            raise typer.Exit(code) from None


app = typer.Typer(
    cls=_Commands, add_completion=True, no_args_is_help=True, help="Signed, gated model releases on Prefect."
)


def _print_version(value: bool) -> None:
    if value:
        from attestflow import __version__

        typer.echo(f"attestflow {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Signed, gated model releases on Prefect."""


app.command("init")(setup.init)
app.add_typer(gates.app, name="gates")
app.command()(releases.run)
app.command()(verification.verify)
app.command()(promotion.approve)
app.command()(promotion.reject)
app.command()(promotion.rollback)
app.command()(environments.promote)
app.command()(verification.lineage)
app.command()(report.report)
app.add_typer(audit.app, name="audit")
app.command()(releases.demo)
app.command()(releases.evaluate)
app.command()(check.check)
app.command("rollback-drill")(drill.rollback_drill)
app.add_typer(server.app, name="server")


def main() -> None:
    """Console-script entry point."""
    from attestflow.workspace import quiet_third_parties

    quiet_third_parties()
    try:
        app()
    except KeyboardInterrupt:
        render.err.print("interrupted")
        sys.exit(130)
