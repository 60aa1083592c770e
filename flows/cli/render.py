"""What the `attestflow` commands print: tables, trees and one-line verdicts, kept apart from what they do.

Every function here prints through `console` (stdout) or `err` (stderr), so that a test can
swap both for wider ones. Every text that comes from users, files, logs or the registry passes
`safe` before rich reads it: credentials redacted, control characters (ESC/CSI/OSC sequences
and the rest of C0 and C1) removed and markup escaped, so that a bracket in a path, an escape
sequence in an actor or a token in a URI is printed harmlessly, or not at all.
"""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from attestflow.redact import redact_json, terminal_safe

if TYPE_CHECKING:
    from pathlib import Path

    from attestflow.alias_drift import AliasDrift
    from attestflow.checks.runner import CheckRun
    from attestflow.outcomes import ReleaseSummary
    from attestflow.records import GateReport, TrainingRecord
    from attestflow.scaffold import InitResult
    from attestflow.verify import Verification
    from tasks.gates.calibrate import MarginSummary

# Piped or under make, rich would wrap at 80 columns and fold digests and gate tables to pieces.
console = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def safe(value: object) -> str:
    """Untrusted text made fit for the terminal: redacted, stripped of control characters, markup escaped."""
    return escape(terminal_safe(str(value)))


def bullets(lines: list[str]) -> str:
    """Lines as an indented list, escaped so that brackets in them are not read as markup."""
    return "\n".join(f"  - {safe(line)}" for line in lines)


def error(message: str) -> None:
    """Bad input: one line on stderr, left for the terminal to wrap so that a log keeps it whole."""
    err.print(f"[bold red]error:[/] {safe(message)}", highlight=False, soft_wrap=True)


def refused(heading: str, reasons: list[str]) -> None:
    """A gate or a verification said no: the heading, then one reason per line."""
    err.print(f"[bold red]{safe(heading)}:[/]\n{bullets(reasons)}", highlight=False)


def could_not_run(message: str) -> None:
    """An outage: something the command needs could not be reached, on one line."""
    err.print(f"[bold red]could not run:[/] {safe(message)}", highlight=False, soft_wrap=True)


def failed(what: str, exc: BaseException, hint: str) -> None:
    """An unexpected failure, named with its type and where to read more."""
    err.print(f"[bold red]{what} failed:[/] {type(exc).__name__}: {safe(str(exc))} ({hint})", highlight=False)


def step(command: str, detail: str) -> None:
    """A step the command is about to take, such as a `dvc repro`."""
    console.print(f"[bold]{safe(command)}[/]: {safe(detail)}", highlight=False)


def note(message: str) -> None:
    """A plain line of output."""
    console.print(safe(message), highlight=False)


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
        cells = [safe(row[k]) for k in ("gate", "metric", "value", "threshold", "baseline", "ci", "margin")]
        # A passing gate's reason restates value and threshold; only a "no" needs its sentence.
        table.add_row(*cells, result, safe(row["reason"]) if row["result"] != "pass" else "")
    return table


def gates(report: GateReport) -> None:
    """The gate table of a report."""
    console.print(gate_table(report))


def training_line(t: TrainingRecord) -> str:
    """Adapter, hardware, speed and where training started from, on one line."""
    start = {
        "scratch": "trained from scratch",
        "warm_start": f"warm start from {t.warm_start.model_uri if t.warm_start else ''}",
        "base_checkpoint": "from the base model",
    }[t.trained_from]
    resumed = f", resumed at step {t.resumed_from_step}" if t.resumed_from_step else ""
    procs = f" x{t.processes} processes" if t.processes > 1 else ""
    return (
        f"{t.adapter} on {t.device}{procs} {t.precision}, {t.epochs} epochs, {t.samples_per_s:,.0f} samples/s, "
        f"peak {t.peak_memory_mb:,.0f} MB, {start}{resumed}"
    )


def summary(summary: ReleaseSummary, seconds: float, tracking_uri: str) -> None:
    """The end-of-release summary: digests, version, gates and where to look."""
    table = Table(title=f"attestflow release of {safe(summary.model_name)}", show_header=False)
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
            else (summary.unchanged.message if summary.unchanged else "no"),
        ),
        ("release folder", str(summary.release_dir)),
        ("took", f"{seconds:.1f} s"),
    ]
    for k, v in rows:
        table.add_row(k, safe(v))
    console.print(table)
    console.print(gate_table(summary.gates) if summary.gates else "gates: not run again (unchanged)")
    prefect_ui, mlflow_ui = _where_to_look(tracking_uri)
    console.print(
        f"Prefect UI:  {prefect_ui} the flow run {safe(summary.flow_run_id)}\n"
        f"MLflow UI:   {safe(mlflow_ui)} (run {safe(summary.training.mlflow_run_id)})",
        highlight=False,
    )


def _where_to_look(tracking_uri: str) -> tuple[str, str]:
    """How to open the run in Prefect and MLflow: the servers in use, or the workspace's dashboard."""
    import os

    api = os.environ.get("PREFECT_API_URL", "")
    prefect_ui = f"open {api.removesuffix('/api')} and find" if api else "[bold]make dashboard[/] then open"
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        return prefect_ui, f"open {tracking_uri}"
    return prefect_ui, f"mlflow ui --backend-store-uri {tracking_uri}"


def verification(model_uri: str, result: Verification, seconds: float, as_json: bool) -> None:
    """The checks of a verification, one line each (or one JSON object), and the verdict."""
    if as_json:
        out: dict[str, Any] = {"target": result.target, "ok": result.ok, "seconds": round(seconds, 3)}
        out["checks"] = [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in result.checks]
        typer.echo(json.dumps(redact_json(out), indent=2))
        return
    console.print(f"verify {safe(model_uri)} -> {safe(result.target)}", highlight=False)
    for c in result.checks:
        mark = "[green]ok  [/]" if c.ok else "[red]FAIL[/]"
        console.print(f"  {mark} {safe(c.name)}: {safe(c.detail)}", highlight=False)
    verdict = "[green]all checks hold[/]" if result.ok else "[red]verification failed[/]"
    console.print(f"{verdict} ({seconds:.2f} s)")


def lineage(graph: dict[str, Any], as_json: bool) -> None:
    """The lineage graph of one model version as a tree, data first, promotions last (or as JSON)."""
    if as_json:
        typer.echo(json.dumps(redact_json(json.loads(json.dumps(graph, default=str))), indent=2))
        return
    from rich.tree import Tree

    def e(value: object) -> str:
        return safe(str(value))

    m = graph["model"]
    tree = Tree(f"[bold]{e(m['uri'])}[/] {e(' '.join('@' + a for a in m['aliases']))}")
    d = graph["data"]
    data = tree.add(
        e(f"data {d['name']}: DVC md5 {d['dvc_md5']} ({d['dvc_file']}, remote {d['dvc_remote']})")
    )
    data.add(e(f"SHA-256 manifest {d['manifest_sha256']}"))
    for v in graph["validation"]:
        data.add(
            e(f"validation: {'passed' if v.get('passed') else 'FAILED ' + ', '.join(v.get('failed', []))}")
        )
    t = graph["training"]
    train = tree.add(
        e(f"training: MLflow run {t.get('mlflow_run_id')} on {t.get('device')} ({t.get('precision')})")
    )
    train.add(e(f"base checkpoint sha256 {t['base_checkpoint_sha256']}"))
    train.add(e(f"checkpoint sha256 {t['checkpoint_sha256']}"))
    o = graph["onnx"]
    onnx = tree.add(e(f"ONNX sha256 {o['sha256']} (opset {o['opset']}, ran on {o['provider']})"))
    sig = graph["signature"]
    signed = onnx.add(e(f"signed by key {sig['key_id']} (builder {sig['builder']})"))
    signed.add(e(f"bundle sha256 {sig['bundle_sha256']}; provenance sha256 {sig['provenance_sha256']}"))
    gate_node = tree.add("gates")
    for g in graph["gates"]:
        gate_node.add(e(f"{'pass' if g.get('passed') else 'FAIL'} {g.get('gate')}: {g.get('reason')}"))
    approvals = tree.add("approval")
    for a in graph["approval"]:
        approvals.add(
            e(f"{a['event']} by {a['actor']} at {a['time'][:19]}: {a.get('reason') or a.get('mode', '')}")
        )
    moves = tree.add("promotions")
    for p in graph["promotions"]:
        moves.add(e(f"{p['event']} at {p['time'][:19]} by {p['actor']} (previous v{p['previous']})"))
    if graph.get("promoted_from"):
        tree.add(e(f"promoted from {graph['promoted_from']}"))
    for folder, said in graph.get("statements", {}).items():
        signed_here = tree.add(e(f"signed statements in {folder}/"))
        for st in said:
            by = f" by {st['by']}" if st.get("by") else ""
            signed_here.add(e(f"{st['kind']} at {str(st['time'])[:19]}: {st['result']}{by}"))
    r, code = graph["run"], graph["code"]
    tree.add(e(f"run: Prefect flow run {r['prefect_flow_run_id']} triggered by {r['triggered_by']}"))
    tree.add(
        e(
            f"code: git {code['git_commit']} (dirty {code['dirty']}, signed {code['signed']}), lock {code['lock']}, "
            f"environment {code['environment']}"
        )
    )
    console.print(tree, highlight=False)


def audit_ok(reason: str, anchors: int, path: Path | str) -> None:
    """An intact audit log, with how many registry anchors back it."""
    anchored = f", {anchors} registry anchor(s) found in it" if anchors else ""
    console.print(f"[green]audit log intact[/]: {safe(f'{reason}{anchored} ({path})')}", highlight=False)


def audit_broken(line: int | None, reason: str, path: Path | str, warning: bool = False) -> None:
    """A broken hash chain, naming the first bad line (as an error, or as a warning before a table)."""
    where = f" at line {line}" if line is not None else ""
    if warning:
        err.print(f"[bold red]warning:[/] audit log broken{where}: {safe(reason)}")
    else:
        err.print(f"[bold red]audit log broken{where}[/]: {safe(f'{reason} ({path})')}", highlight=False)


def audit_skipped(lines: list[int]) -> None:
    """A warning that malformed lines of the audit log are left out of the table."""
    shown = ", ".join(str(n) for n in lines[:10]) + (", ..." if len(lines) > 10 else "")
    err.print(f"[bold red]warning:[/] {len(lines)} malformed audit line(s) not shown: {shown}")


def alias_drift(drift: list[AliasDrift]) -> None:
    """Aliases moved outside attestflow, one line each, and the two ways to settle them."""
    for d in drift:
        err.print(f"[bold red]alias moved outside attestflow[/]: {safe(str(d))}", highlight=False)
    err.print(
        "adopt with `attestflow audit adopt MODEL --reason ...`, or set the alias back to the audited version",
        highlight=False,
    )


def adopted(model: str, drift: list[AliasDrift]) -> None:
    """What `audit adopt` recorded as audited, or that there was nothing to adopt."""
    if not drift:
        note(f"{model}: the registry's aliases already match the audit log; nothing adopted")
    for d in drift:
        note(f"adopted: {d}")


def audit_table(rows: list[dict[str, Any]], model: str | None) -> None:
    """Audit entries as a table: when, what, which model version, who, and the details."""
    table = Table(title=f"audit history{f' of {safe(model)}' if model else ''}")
    for col in ("#", "time (UTC)", "event", "model", "version", "actor", "details"):
        table.add_column(col)
    for row in rows:
        details = _details(row)
        cells = (
            row["time"][:19],
            row["event"],
            row["model"] or "",
            row["version"] or "",
            row["actor"],
            details,
        )
        table.add_row(str(row["seq"]), *(safe(str(c)) for c in cells))
    console.print(table)


def _details(row: dict[str, Any]) -> str:
    """An entry's details as ``key=value`` text; a failed release's stage and reason come first."""
    given = {k: v for k, v in row["details"].items() if v not in (None, [], "")}
    if row["event"] == "release_failed":
        given = {"stage": given.pop("stage", "?"), "reason": given.pop("reason", "?"), **given}
    return ", ".join(f"{k}={v}" for k, v in given.items())


def margins(summaries: list[MarginSummary], name: str, last: int) -> None:
    """Per gate metric, the min/median/max margin over the last releases, loose gates marked."""
    from tasks.gates.report import number

    table = Table(title=f"gate margins of {safe(name)}, last {last} release(s)")
    for col in ("gate", "metric", "releases", "failed", "min", "median", "max", "headroom", "note"):
        table.add_column(col)
    for s in summaries:
        note_ = "[yellow]loose: never came close[/]" if s.loose else ""
        headroom = "-" if math.isnan(s.headroom) else f"{s.headroom:.0%}"
        cells = (
            s.gate,
            s.metric,
            str(s.releases),
            str(s.failed),
            number(s.min),
            number(s.median),
            number(s.max),
        )
        table.add_row(*(safe(c) for c in cells), headroom, note_)
    console.print(table)


def _shown_path(path: Path) -> str:
    """`path` relative to the current folder when it lies below it."""
    from pathlib import Path as _Path

    here = _Path.cwd().resolve()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


def initialised(result: InitResult) -> None:
    """What `attestflow init` wrote and inferred, and the command to run next."""
    spec, base = result.spec, result.baseline
    for path, what in zip(
        result.written,
        ("release config", "gate policy, thresholds from a baseline", "expectation suite"),
        strict=True,
    ):
        console.print(f"[green]wrote[/] {safe(_shown_path(path))} ({what})", highlight=False)
    if result.dvc_init:
        note(f"ran `{result.dvc_init}`: no DVC repository held the data")
    note(f"DVC tracks the data in {_shown_path(result.dvc_file)}; commit that file with the configs")
    features = ", ".join(spec.features[:4]) + (
        f", ... ({len(spec.features)} in all)" if len(spec.features) > 4 else ""
    )
    kind = "binary" if len(spec.classes) == 2 else f"{len(spec.classes)} classes"
    model = "MiniLM fine-tuned on the text column" if spec.text_column else "an MLP trained from scratch"
    scores = ", ".join(f"{k} {v:.4f}" for k, v in {**base.metrics, **base.fairness}.items())
    lines = [
        f"features: {features}",
        f"classes: {list(spec.classes)} ({kind})",
        f"adapter: {spec.adapter} ({model})",
        f"baseline: {base.model}, on {base.held_out} held-out rows: {scores}",
        f"fairness gate: over {spec.sensitive}"
        if spec.sensitive
        else "fairness gate: none (no --sensitive column)",
    ]
    if spec.with_missing:
        lines.append(f"missing values in {', '.join(spec.with_missing)}: data.missing median")
    if spec.ignored:
        lines.append(f"not used by the model: {', '.join(spec.ignored)}")
    console.print(f"[bold]inferred[/]:\n{bullets(lines)}", highlight=False)
    console.print(f"[bold]next[/]: {safe(result.next_command)}", highlight=False)


def check_run(run: CheckRun, seconds: float) -> None:
    """`attestflow check`'s findings as a table (check, where, what, what to do), then one verdict line."""
    if run.findings:
        table = Table(title=f"{len(run.findings)} finding(s)")
        for col in ("check", "where", "finding", "what to do"):
            table.add_column(col, overflow="fold")
        for f in run.findings:
            table.add_row(safe(f.check), safe(f.location), safe(f.message), safe(f.fix))
        console.print(table)
    for note in run.notes:
        console.print(f"[dim]{safe(note)}[/]", highlight=False)
    verdict = "[bold red]findings[/]" if run.findings else "[green]clean[/]"
    console.print(f"{verdict}: {safe(', '.join(run.ran))} in {seconds:.1f} s", highlight=False)
