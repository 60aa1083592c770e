"""The `attestflow` command line.

Exit codes are a contract: 0 released (or verified), 1 a gate or a verification said no
(reasons printed), 2 bad input or configuration (one clear line, no traceback).
Prefect and MLflow are imported only after the workspace has pointed them at their
state, since both read their settings at import.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from attestflow.config import ReleaseConfig, default_config_path, load_config
from attestflow.errors import BadInputError, GateFailedError
from attestflow.records import ReleaseSummary
from attestflow.workspace import Workspace, quiet_third_parties

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Signed, gated model releases on Prefect.")
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Release config YAML.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: stage.key=value.")]


def fail(code: int, message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}" if code == 2 else message, highlight=False)
    raise typer.Exit(code)


class _ExpectedFailureFilter(logging.Filter):
    """Log a bad input or a gate's "no" as one line, not a traceback: it is not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], BadInputError | GateFailedError):
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


def preflight(cfg: ReleaseConfig) -> None:
    """Catch missing inputs before a flow run starts, so they cost nothing and say why."""
    for what, path in (
        ("data.path", cfg.data.path),
        ("validate_data.suite", cfg.validate_data.suite),
        ("fine_tune.base_checkpoint", cfg.fine_tune.base_checkpoint),
    ):
        if not path.exists():
            raise BadInputError(f"{what}: {path} does not exist")


def print_summary(summary: ReleaseSummary, seconds: float) -> None:
    """The end-of-release summary: digests, version, gates and where to look."""
    table = Table(title=f"attestflow release of {summary.model_name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    promo = summary.promotion
    rows = [
        ("data", f"{summary.snapshot.data_path.name} ({summary.snapshot.files} file(s))"),
        ("data DVC md5", summary.snapshot.dvc_md5),
        ("data validation", f"{summary.validation.evaluated} expectations passed"),
        (
            "training",
            f"{summary.training.device} {summary.training.precision}, "
            f"{summary.training.epochs} epochs, resumed from epoch {summary.training.resumed_from_epoch}",
        ),
        ("ONNX sha256", summary.onnx.digest.value),
        (
            "ONNX Runtime",
            f"{summary.onnx_validation.provider}, max |diff| vs torch "
            f"{summary.onnx_validation.max_abs_diff:.2e}, p50 {summary.onnx_validation.latency_ms_p50:.3f} ms",
        ),
        ("metrics", ", ".join(f"{k} {v:.4f}" for k, v in summary.onnx_validation.metrics.items())),
        ("model version", summary.registration.model_uri),
        (
            "promoted",
            f"@{promo.alias} -> v{promo.version} (was {promo.previous_version or 'unset'})"
            if promo
            else "no",
        ),
        ("release folder", str(summary.release_dir)),
        ("took", f"{seconds:.1f} s"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    gates = Table(title="gates")
    for col in ("gate", "metric", "value", "threshold", "result", "reason"):
        gates.add_column(col)
    for g in summary.gates:
        verdict = "[green]pass[/]" if g.passed else "[red]FAIL[/]"
        gates.add_row(g.gate, g.metric, f"{g.value:.4f}", f"{g.threshold:.4f}", verdict, g.reason)
    console.print(gates)
    ws_root = summary.release_dir.parents[2]
    console.print(
        f"Prefect UI:  [bold]make dashboard[/] then open the flow run {summary.flow_run_id}\n"
        f"MLflow UI:   mlflow ui --backend-store-uri sqlite:///{ws_root}/mlflow.db "
        f"(run {summary.training.mlflow_run_id})",
        highlight=False,
    )


def _run_release(config: Path, overrides: list[str]) -> None:
    started = time.perf_counter()
    try:
        cfg = load_config(config, overrides)
        preflight(cfg)
    except BadInputError as e:
        fail(2, str(e))
    Workspace.at(cfg.workspace).activate()
    from flows.release import release

    _quiet_expected_failures()
    state: Any = release(config_path=str(config), overrides=overrides, return_state=True)
    if state.is_completed():
        print_summary(state.result(), time.perf_counter() - started)
        return
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, BadInputError):
        fail(2, str(exc))
    if isinstance(exc, GateFailedError):
        fail(1, "[bold red]release refused:[/]\n" + "\n".join(f"  - {r}" for r in exc.reasons))
    fail(1, f"[bold red]release failed:[/] {type(exc).__name__}: {exc} (see the Prefect run log)")


@app.command()
def run(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Run the release flow on the configured data and model."""
    _run_release(config or default_config_path(), set_ or [])


@app.command()
def verify(
    model_uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS")],
    config: ConfigOpt = None,
    public_key: Annotated[
        Path | None, typer.Option(help="Trusted PEM public key (default: config/workspace).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Re-hash and verify a registered model: signature, provenance, tags and data snapshot."""
    from attestflow.keys import trusted_public_key
    from attestflow.tracking import tracking_uri
    from attestflow.verify import parse_model_uri, verify_model_uri

    started = time.perf_counter()
    try:
        parse_model_uri(model_uri)
        cfg = load_config(config or default_config_path())
        ws = Workspace.at(cfg.workspace)
        key = trusted_public_key(public_key or cfg.sign.public_key, ws.root)
        result = verify_model_uri(model_uri, tracking_uri(cfg.register.tracking_uri, ws), key)
    except BadInputError as e:
        fail(2, str(e))
    seconds = time.perf_counter() - started
    if as_json:
        out = {"target": result.target, "ok": result.ok, "seconds": round(seconds, 3)}
        out["checks"] = [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in result.checks]
        typer.echo(json.dumps(out, indent=2))
    else:
        console.print(f"verify {model_uri} -> {result.target}", highlight=False)
        for c in result.checks:
            mark = "[green]ok  [/]" if c.ok else "[red]FAIL[/]"
            console.print(f"  {mark} {c.name}: {c.detail}", highlight=False)
        verdict = "[green]all checks hold[/]" if result.ok else "[red]verification failed[/]"
        console.print(f"{verdict} ({seconds:.2f} s)")
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def demo(set_: SetOpt = None) -> None:
    """Build the bundled example's data with `dvc repro`, then release it."""
    from dvc.repo import Repo

    console.print("[bold]dvc repro[/]: example data and base checkpoint")
    with Repo(".") as repo:
        repo.reproduce()
    _run_release(Path("configs/release.yaml"), set_ or [])


def main() -> None:
    """Console-script entry point."""
    quiet_third_parties()
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
