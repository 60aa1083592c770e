"""The `attestflow` command line.

Exit codes are a contract: 0 released (or verified), 1 a gate or a verification said no
(reasons printed), 2 bad input or configuration (one clear line, no traceback).
Prefect and MLflow are imported only after the workspace has pointed them at their
state, since both read their settings at import.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from attestflow.adapters import load_adapter
from attestflow.config import ReleaseConfig, default_config_path, load_config
from attestflow.errors import BadInputError, GateFailedError
from attestflow.policy import load_policy
from attestflow.records import GateReport, ReleaseSummary, TrainingRecord
from attestflow.workspace import Workspace, quiet_third_parties

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Signed, gated model releases on Prefect.")
gates_app = typer.Typer(no_args_is_help=True, help="The release gates: calibration of their thresholds.")
app.add_typer(gates_app, name="gates")
# Piped or under make, rich would wrap at 80 columns and fold digests and gate tables to pieces.
console = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

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


def python_on_path() -> None:
    """Put this environment's interpreter first on PATH: DVC stage commands say `python`."""
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def pipeline_stage_of(path: Path, repo_root: Path) -> str | None:
    """The name of the stage in ``repo_root/dvc.yaml`` that outputs `path`, read without importing DVC."""
    dvc_yaml = repo_root / "dvc.yaml"
    if not dvc_yaml.is_file():
        return None
    try:
        stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    except yaml.YAMLError:
        return None
    target = path.resolve()
    for name, stage in stages.items():
        wdir = repo_root / stage.get("wdir", ".")
        for out in stage.get("outs", []):
            out_path = next(iter(out)) if isinstance(out, dict) else out
            if (wdir / str(out_path)).resolve() == target:
                return str(name)
    return None


def materialize(path: Path, repo_root: Path) -> bool:
    """Build or fetch a missing file that a stage of the DVC pipeline outputs (``dvc repro``, pulling
    cached outputs from the remote where it has them); False when no stage outputs it."""
    stage = pipeline_stage_of(path, repo_root)
    if stage is None:
        return False
    # Imported only now: DVC binds its log handler to whatever stdout is at its first import.
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    console.print(f"[bold]dvc repro {stage}[/]: {path} is a pipeline output not yet built here")
    python_on_path()
    try:
        with Repo(str(repo_root)) as repo:
            repo.reproduce(stage, pull=True)
    except DvcException as e:
        raise BadInputError(f"{path} is missing and `dvc repro {stage}` failed: {e}") from None
    return path.exists()


def preflight(cfg: ReleaseConfig) -> None:
    """Catch missing inputs and an invalid gate policy before a flow run starts, so they cost nothing.

    A missing input that the DVC pipeline produces (the example data, the base checkpoint) is
    built first, as `dvc repro` would.
    """
    load_policy(cfg.gates.policy)
    load_adapter(cfg.model)  # an unknown adapter or a bad option is bad input before any work
    for what, path in (
        ("data.path", cfg.data.path),
        ("validate_data.suite", cfg.validate_data.suite),
        ("fine_tune.base_checkpoint", cfg.fine_tune.base_checkpoint),
    ):
        if path is not None and not path.exists() and not materialize(path, cfg.snapshot.repo):
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
        # A passing gate's reason restates value and threshold; only a "no" needs its sentence.
        table.add_row(*cells, result, escape(row["reason"]) if row["result"] != "pass" else "")
    return table


def training_line(t: TrainingRecord) -> str:
    """Adapter, hardware, speed and where training started from, on one line."""
    start = f"warm start from {t.warm_start.model_uri}" if t.warm_start else "from the base model"
    resumed = f", resumed at step {t.resumed_from_step}" if t.resumed_from_step else ""
    procs = f" x{t.processes} processes" if t.processes > 1 else ""
    return (
        f"{t.adapter} on {t.device}{procs} {t.precision}, {t.epochs} epochs, {t.samples_per_s:,.0f} samples/s, "
        f"peak {t.peak_memory_mb:,.0f} MB, {start}{resumed}"
    )


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
        ("training", training_line(summary.training)),
        ("ONNX sha256", summary.onnx.digest.value),
        (
            "ONNX Runtime",
            f"{summary.onnx_validation.provider}, max |diff| vs torch "
            f"{summary.onnx_validation.max_abs_diff:.2e}, p50 {summary.onnx_validation.latency_ms_p50:.3f} ms",
        ),
        ("metrics", ", ".join(f"{k} {v:.4f}" for k, v in summary.onnx_validation.metrics.items())),
        ("model version", summary.registration.model_uri),
        (
            "signed",
            f"bundle {summary.signature.bundle_digest.value[:16]}..., key {summary.signature.key_id[:23]}...",
        ),
        (
            "approval",
            f"{summary.approval.approver} ({summary.approval.mode}): {summary.approval.reason}"
            if summary.approval
            else "not asked",
        ),
        ("canary", summary.canary.reason if summary.canary else "not run"),
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
    try:
        state: Any = release(config_path=str(config), overrides=overrides, return_state=True)
    except Exception as e:  # the orchestrator itself failed (no API, no database): not a gate's "no"
        fail(1, f"[bold red]release could not run:[/] {type(e).__name__}: {str(e).splitlines()[0]}")
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


def _workspace(config: Path | None) -> tuple[ReleaseConfig, Workspace]:
    cfg = load_config(config or default_config_path())
    return cfg, Workspace.at(cfg.workspace)


def _decide(run_id: str, approve_it: bool, reason: str, digest: str, approver: str | None) -> None:
    from uuid import UUID

    from attestflow.audit import actor

    try:
        flow_run_id = UUID(run_id)
    except ValueError:
        fail(2, f"not a flow run id: {run_id!r}")
    if not reason.strip():
        fail(2, "--reason is required: say why, for the audit trail")
    from prefect.flow_runs import resume_flow_run

    decision = {"approve": approve_it, "approver": approver or actor(), "reason": reason, "digest": digest}
    try:
        resume_flow_run(flow_run_id, run_input=decision)
    except Exception as e:  # the Prefect client raises several types for unknown or unpaused runs
        fail(
            2,
            f"cannot resume flow run {run_id}: {str(e).splitlines()[0]} (is PREFECT_API_URL set to the server?)",
        )
    console.print(f"{'approved' if approve_it else 'rejected'} flow run {run_id} for bundle {digest[:16]}...")


DigestOpt = Annotated[str, typer.Option(help="SHA-256 of the bundle you checked (12+ leading characters).")]
ReasonOpt = Annotated[str, typer.Option(help="Why, for the audit trail.")]
ApproverOpt = Annotated[
    str | None, typer.Option(help="Who decides (default: $ATTESTFLOW_ACTOR or the OS user).")
]


@app.command()
def approve(run_id: str, digest: DigestOpt, reason: ReasonOpt, approver: ApproverOpt = None) -> None:
    """Approve the promotion a paused release flow is waiting on."""
    _decide(run_id, True, reason, digest, approver)


@app.command()
def reject(run_id: str, digest: DigestOpt, reason: ReasonOpt, approver: ApproverOpt = None) -> None:
    """Reject the promotion a paused release flow is waiting on."""
    _decide(run_id, False, reason, digest, approver)


@app.command()
def rollback(
    to: Annotated[
        str | None, typer.Option("--to", help="Version to roll back to (default: @previous).")
    ] = None,
    config: ConfigOpt = None,
    model: Annotated[str | None, typer.Option(help="Registered model name (default: config's).")] = None,
) -> None:
    """Point champion back at the previous (or a named) version, after verifying it."""
    from attestflow.aliases import rollback as roll_back
    from attestflow.audit import AuditLog
    from attestflow.keys import trusted_public_key
    from attestflow.tracking import tracking_uri

    try:
        cfg, ws = _workspace(config)
        moved = roll_back(
            model or cfg.model_name,
            to,
            alias=cfg.promote.alias,
            previous_alias=cfg.promote.previous_alias,
            tracking_uri=tracking_uri(cfg.register.tracking_uri, ws),
            public_key=trusted_public_key(cfg.sign.public_key, ws.root),
            audit=AuditLog.of(ws.root),
        )
    except BadInputError as e:
        fail(2, str(e))
    except GateFailedError as e:
        fail(1, "[bold red]rollback refused:[/]\n" + "\n".join(f"  - {r}" for r in e.reasons))
    console.print(f"@{moved.alias} -> {moved.model_name} v{moved.version} (was v{moved.previous_version})")


@app.command()
def lineage(
    start: Annotated[
        str, typer.Argument(help="models:/NAME/VERSION, models:/NAME@ALIAS, an ONNX SHA-256 or a flow run id")
    ],
    config: ConfigOpt = None,
    model: Annotated[
        str | None, typer.Option(help="Restrict a digest or run id search to this model.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The chain from data snapshot to promotions of one model version."""
    from rich.tree import Tree

    from attestflow.lineage_graph import lineage as gather
    from attestflow.tracking import tracking_uri

    try:
        cfg, ws = _workspace(config)
        graph = gather(start, tracking_uri(cfg.register.tracking_uri, ws), ws.root, model)
    except BadInputError as e:
        fail(2, str(e))
    if as_json:
        typer.echo(json.dumps(graph, indent=2, default=str))
        return
    m = graph["model"]
    tree = Tree(f"[bold]{m['uri']}[/] {' '.join('@' + a for a in m['aliases'])}")
    d = graph["data"]
    data = tree.add(f"data {d['name']}: DVC md5 {d['dvc_md5']} ({d['dvc_file']}, remote {d['dvc_remote']})")
    data.add(f"SHA-256 manifest {d['manifest_sha256']}")
    for v in graph["validation"]:
        data.add(f"validation: {'passed' if v.get('passed') else 'FAILED ' + ', '.join(v.get('failed', []))}")
    t = graph["training"]
    train = tree.add(
        f"training: MLflow run {t.get('mlflow_run_id')} on {t.get('device')} ({t.get('precision')})"
    )
    train.add(f"base checkpoint sha256 {t['base_checkpoint_sha256']}")
    train.add(f"checkpoint sha256 {t['checkpoint_sha256']}")
    o = graph["onnx"]
    onnx = tree.add(f"ONNX sha256 {o['sha256']} (opset {o['opset']}, ran on {o['provider']})")
    sig = graph["signature"]
    signed = onnx.add(f"signed by key {sig['key_id']} (builder {sig['builder']})")
    signed.add(f"bundle sha256 {sig['bundle_sha256']}; provenance sha256 {sig['provenance_sha256']}")
    gates = tree.add("gates")
    for g in graph["gates"]:
        gates.add(f"{'pass' if g.get('passed') else 'FAIL'} {g.get('gate')}: {g.get('reason')}")
    approvals = tree.add("approval")
    for a in graph["approval"]:
        approvals.add(
            f"{a['event']} by {a['actor']} at {a['time'][:19]}: {a.get('reason') or a.get('mode', '')}"
        )
    moves = tree.add("promotions")
    for p in graph["promotions"]:
        moves.add(f"{p['event']} at {p['time'][:19]} by {p['actor']} (previous v{p['previous']})")
    r, code = graph["run"], graph["code"]
    tree.add(f"run: Prefect flow run {r['prefect_flow_run_id']} triggered by {r['triggered_by']}")
    tree.add(f"code: git {code['git_commit']} (dirty {code['dirty']}), lock {code['lock']}")
    console.print(tree, highlight=False)


audit_app = typer.Typer(no_args_is_help=True, help="The workspace's hash-chained audit log.")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(config: ConfigOpt = None) -> None:
    """Check the audit log's hash chain; exit 1 naming the first bad line."""
    from attestflow.audit import AuditLog, registry_anchors
    from attestflow.tracking import tracking_uri

    try:
        cfg, ws = _workspace(config)
    except BadInputError as e:
        fail(2, str(e))
    log = AuditLog.of(ws.root)
    anchors = registry_anchors(tracking_uri(cfg.register.tracking_uri, ws))
    ok, line, reason = log.verify(anchors)
    if ok:
        anchored = f", {len(anchors)} registry anchor(s) found in it" if anchors else ""
        console.print(f"[green]audit log intact[/]: {reason}{anchored} ({log.path})", highlight=False)
        return
    fail(1, f"[bold red]audit log broken at line {line}[/]: {reason} ({log.path})")


@audit_app.command("show")
def audit_show(
    config: ConfigOpt = None,
    model: Annotated[str | None, typer.Option(help="Only this registered model.")] = None,
    all_events: Annotated[bool, typer.Option("--all", help="Every event, not only alias moves.")] = False,
) -> None:
    """Which version was champion when, who moved it, and why."""
    from attestflow.audit import AuditLog, champion_history

    try:
        _, ws = _workspace(config)
    except BadInputError as e:
        fail(2, str(e))
    log = AuditLog.of(ws.root)
    ok, line, reason = log.verify()
    if not ok:
        err.print(f"[bold red]warning:[/] audit log broken at line {line}: {reason}")
    entries = log.entries()
    rows = (
        [x for x in entries if model in (None, x["model"])]
        if all_events
        else champion_history(entries, model)
    )
    table = Table(title=f"audit history{f' of {model}' if model else ''}")
    for col in ("#", "time (UTC)", "event", "model", "version", "actor", "details"):
        table.add_column(col)
    for row in rows:
        details = ", ".join(f"{k}={v}" for k, v in row["details"].items() if v not in (None, [], ""))
        table.add_row(
            str(row["seq"]),
            row["time"][:19],
            row["event"],
            row["model"] or "",
            row["version"] or "",
            row["actor"],
            details,
        )
    console.print(table)
    if not ok:
        raise typer.Exit(1)


@app.command()
def demo(set_: SetOpt = None) -> None:
    """Build the bundled example's data with `dvc repro`, then release it."""
    from dvc.repo import Repo

    console.print("[bold]dvc repro[/]: example data and base checkpoint")
    python_on_path()
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
    except GateFailedError as e:
        fail(1, "[bold red]refused:[/]\n" + bullets(e.reasons))
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
