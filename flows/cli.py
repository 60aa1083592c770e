"""The `attestflow` command line.

Exit codes are a contract: 0 released (or verified), 1 a gate or a verification said no
(reasons printed), 2 bad input or configuration (one clear line, no traceback).
Prefect and MLflow are imported only after the workspace has pointed them at their
state, since both read their settings at import.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from attestflow.config import ReleaseConfig, default_config_path, load_config
from attestflow.errors import BadInputError, GateFailedError
from attestflow.policy import load_policy
from attestflow.records import GateReport, ReleaseSummary
from attestflow.workspace import Workspace, quiet_third_parties

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Signed, gated model releases on Prefect.")
gates_app = typer.Typer(no_args_is_help=True, help="The release gates: calibration of their thresholds.")
app.add_typer(gates_app, name="gates")
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Release config YAML.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: stage.key=value.")]


def bullets(lines: list[str]) -> str:
    """Lines as an indented list, escaped so that brackets in them are not read as markup."""
    return "\n".join(f"  - {escape(line)}" for line in lines)


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
    """Catch missing inputs and an invalid gate policy before a flow run starts, so they cost nothing."""
    load_policy(cfg.gates.policy)
    for what, path in (
        ("data.path", cfg.data.path),
        ("validate_data.suite", cfg.validate_data.suite),
        ("fine_tune.base_checkpoint", cfg.fine_tune.base_checkpoint),
    ):
        if not path.exists():
            raise BadInputError(f"{what}: {path} does not exist")


def gate_table(report: GateReport) -> Table:
    """Every gate decision of a report as a table: value, threshold, baseline, interval, margin."""
    from tasks.gates.report import table_rows

    verdict = "passed" if report.passed else "FAILED"
    table = Table(
        title=f"gates: {verdict} in {report.seconds:.1f} s (policy {report.policy_digest.value[:12]})"
    )
    for col in ("gate", "metric", "value", "threshold", "baseline", "CI", "margin", "result", "reason"):
        table.add_column(col, overflow="fold")
    for row in table_rows(report):
        result = "[green]pass[/]" if row["result"] == "pass" else "[red]FAIL[/]"
        cells = [escape(row[k]) for k in ("gate", "metric", "value", "threshold", "baseline", "ci", "margin")]
        table.add_row(*cells, result, escape(row["reason"]))
    return table


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
    console.print(gate_table(summary.gates))
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
        fail(1, "[bold red]release refused:[/]\n" + bullets(exc.reasons))
    fail(1, f"[bold red]release failed:[/] {type(exc).__name__}: {exc} (see the Prefect run log)")


@app.command()
def run(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Run the release flow on the configured data and model."""
    _run_release(config or default_config_path(), set_ or [])


@app.command()
def demo(set_: SetOpt = None) -> None:
    """Build the bundled example's data with `dvc repro`, then release it."""
    from dvc.repo import Repo

    console.print("[bold]dvc repro[/]: example data and base checkpoint")
    with Repo(".") as repo:
        repo.reproduce()
    _run_release(Path("configs/release.yaml"), set_ or [])


ModelArg = Annotated[str, typer.Argument(help="An ONNX file, or models:/NAME/VERSION or models:/NAME@ALIAS.")]
PolicyOpt = Annotated[Path | None, typer.Option("--policy", help="Gate policy YAML (default: gates.policy).")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="Data file (default: data.path of the config).")]
CheckpointOpt = Annotated[
    Path | None, typer.Option("--checkpoint", help="Torch checkpoint of the model, for the FGSM attack.")
]


@app.command()
def evaluate(
    model: ModelArg,
    policy: PolicyOpt = None,
    data: DataOpt = None,
    config: ConfigOpt = None,
    checkpoint: CheckpointOpt = None,
) -> None:
    """Run the gate suite alone on a model: exit 0 when every gate passes, 1 when one says no."""
    try:
        cfg = load_config(config or default_config_path())
        if data is not None:
            cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": data})})
        gate_policy = load_policy(policy or cfg.gates.policy)
        if not cfg.data.path.is_file():
            raise BadInputError(f"data file not found: {cfg.data.path}")
        if checkpoint is not None and not checkpoint.is_file():
            raise BadInputError(f"checkpoint not found: {checkpoint}")
        Workspace.at(cfg.workspace).activate()
        from flows.evaluate import evaluate as evaluate_model

        report = evaluate_model(model, cfg, gate_policy, checkpoint)
    except BadInputError as e:
        fail(2, str(e))
    console.print(gate_table(report))
    if not report.passed:
        fail(1, "[bold red]gates said no:[/]\n" + bullets(report.failures()))


@gates_app.command()
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
    try:
        cfg = load_config(config or default_config_path())
    except BadInputError as e:
        fail(2, str(e))
    ws = Workspace.at(cfg.workspace)
    ws.activate()
    from attestflow.tracking import tracking_uri
    from tasks.gates.calibrate import calibrate as margins_of
    from tasks.gates.report import number

    name = model or cfg.model_name
    summaries = margins_of(tracking_uri(cfg.register.tracking_uri, ws), name, last)
    if not summaries:
        fail(2, f"no gate margins recorded for model {name!r}: release it first")
    table = Table(title=f"gate margins of {name}, last {last} release(s)")
    for col in ("gate", "metric", "releases", "failed", "min", "median", "max", "headroom", "note"):
        table.add_column(col)
    for s in summaries:
        note = "[yellow]loose: never came close[/]" if s.loose else ""
        headroom = "-" if math.isnan(s.headroom) else f"{s.headroom:.0%}"
        margins = (number(s.min), number(s.median), number(s.max))
        table.add_row(s.gate, s.metric, str(s.releases), str(s.failed), *margins, headroom, note)
    console.print(table)


def main() -> None:
    """Console-script entry point."""
    quiet_third_parties()
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
