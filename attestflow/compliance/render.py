"""A compliance report as Markdown, JSON or one self-contained HTML page.

The HTML page is for someone who is not an engineer: counts by status first, then one row per
control with a coloured status word, what the control asks in plain words, and the evidence
that meets it (or what is missing). It carries its own CSS and no script, so it can be mailed,
archived or opened offline; every text in it is escaped.
"""

from __future__ import annotations

import json
from html import escape
from typing import Literal

from attestflow.compliance.assess import STATUSES, ControlResult, Finding, Report

Format = Literal["md", "html", "json"]
FORMATS: tuple[Format, ...] = ("md", "html", "json")
MEANING = {
    "verified": "met by signed evidence, re-verified when this report was made",
    "declared": "met, but partly only by text people wrote in the repository",
    "missing": "not met, or attestflow holds no evidence for it",
}


def render(report: Report, fmt: Format) -> str:
    """The report in `fmt`."""
    if fmt == "json":
        return json.dumps(report.as_json(), indent=2) + "\n"
    return markdown(report) if fmt == "md" else html(report)


def _facts(report: Report) -> list[tuple[str, str]]:
    g, m = report.gathered, report.mapping
    checks = g.verification.checks
    verified = f"passed ({len(checks)} checks: {', '.join(c.name for c in checks)})"
    return [
        ("Model", g.model),
        ("Version", str(g.version or "-")),
        ("Model URI", g.target),
        ("model.onnx SHA-256", g.folder.onnx),
        ("Verification", verified if g.verification.ok else "FAILED"),
        ("Mapping", f"{m.path} (sha256:{m.digest.value})"),
        ("Framework", f"{m.spec.title}, mapping version {m.spec.version} ({m.spec.source})"),
        ("Generated", g.generated),
    ]


def _evidence_lines(f: Finding) -> str:
    items = "; ".join(
        f"{i.kind} `{i.file}`"
        + (f" {i.digest[:19]}" if i.digest else "")
        + (f" at {i.time}" if i.time else "")
        for i in f.items
    )
    return f"`{f.requirement}` {f.status}: {f.detail}" + (f" ({items})" if items else "")


def markdown(report: Report) -> str:
    """The report as Markdown: facts, counts, then one section per control."""
    counts = report.counts
    lines = [f"# {report.mapping.spec.title}: {report.gathered.target}", ""]
    lines += [f"- **{k}**: {v}" for k, v in _facts(report)]
    lines += ["", " · ".join(f"**{counts[s]} {s}**" for s in STATUSES), ""]
    lines += [f"- *{s}*: {MEANING[s]}" for s in STATUSES]
    lines += ["", "| Control | Status | What it asks |", "|---|---|---|"]
    lines += [f"| {r.control.title} | **{r.status}** | {r.control.description} |" for r in report.controls]
    for r in report.controls:
        lines += ["", f"## {r.control.title}: {r.status}", "", r.control.description, ""]
        if r.control.gap:
            lines.append(f"- no evidence: {r.control.gap}")
        lines += [f"- {_evidence_lines(f)}" for f in r.findings]
    return "\n".join(lines) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
 color:#1f2328;padding:0 1rem;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem} .sub{color:#59636e;margin-top:0}
.summary{display:flex;gap:1rem;margin:1.2rem 0}
.count{flex:1;border-radius:8px;padding:.8rem 1rem;color:#fff}
.count b{font-size:2rem;display:block} .count span{font-size:.85rem}
.verified{background:#1a7f37} .declared{background:#9a6700} .missing{background:#cf222e}
table.facts{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
table.facts th{text-align:left;padding:.15rem 1rem .15rem 0;color:#59636e;font-weight:600}
table.facts td{font-family:ui-monospace,monospace;word-break:break-all}
table.controls{border-collapse:collapse;width:100%;font-size:.92rem}
table.controls th{background:#f6f8fa;text-align:left;padding:.5rem;border-bottom:2px solid #d0d7de}
table.controls td{vertical-align:top;padding:.55rem .5rem;border-bottom:1px solid #d0d7de}
.badge{display:inline-block;border-radius:1rem;padding:.1rem .7rem;color:#fff;font-weight:600;font-size:.8rem}
.title{font-weight:600} .desc{color:#424a53}
ul.ev{margin:0;padding-left:1.1rem} ul.ev li{margin-bottom:.25rem}
.req{font-family:ui-monospace,monospace;font-size:.82rem}
.ok{color:#1a7f37} .decl{color:#9a6700} .no{color:#cf222e}
.file{font-family:ui-monospace,monospace;font-size:.78rem;color:#59636e;word-break:break-all}
.ok-banner{padding:.6rem 1rem;border-radius:6px;background:#dafbe1;border:1px solid #1a7f37}
"""
_MARK = {"verified": "ok", "declared": "decl", "missing": "no"}


def _finding_html(f: Finding) -> str:
    files = "".join(
        f'<div class="file">{escape(i.kind)}: {escape(i.file)}'
        + (f" · {escape(i.digest[:23])}…" if i.digest else "")
        + (f" · {escape(i.time)}" if i.time else "")
        + "</div>"
        for i in f.items
    )
    return (
        f'<li><span class="req">{escape(f.requirement)}</span> '
        f'<span class="{_MARK[f.status]}">{escape(f.status)}</span>: {escape(f.detail)}{files}</li>'
    )


def _row(r: ControlResult) -> str:
    evidence = (
        f"<em>attestflow holds no evidence for this: {escape(r.control.gap)}</em>"
        if r.control.gap
        else f'<ul class="ev">{"".join(_finding_html(f) for f in r.findings)}</ul>'
    )
    required = (
        f" (required at risk tier {', '.join(r.control.required_when)})" if r.control.required_when else ""
    )
    return (
        f'<tr data-control="{escape(r.control.id)}" data-status="{r.status}">'
        f'<td><span class="badge {r.status}">{escape(r.status)}</span></td>'
        f'<td><div class="title">{escape(r.control.title)}</div>'
        f'<div class="desc">{escape(r.control.description)}{escape(required)}</div></td>'
        f"<td>{evidence}</td></tr>"
    )


def html(report: Report) -> str:
    """The report as one HTML page with inline CSS and no script."""
    counts, title = report.counts, report.mapping.spec.title
    summary = "".join(
        f'<div class="count {s}" id="count-{s}"><b>{counts[s]}</b>{s}<br><span>{escape(MEANING[s])}</span></div>'
        for s in STATUSES
    )
    facts = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in _facts(report))
    rows = "".join(_row(r) for r in report.controls)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}: {escape(report.gathered.target)}</title><style>{CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="sub">Compliance report for {escape(report.gathered.model)} version {escape(str(report.gathered.version or "-"))},
made from its signed evidence. {len(report.controls)} controls.</p>
<div class="summary">{summary}</div>
<p class="ok-banner">The model was verified when this report was made: its signature, provenance and
evidence were checked again with the trusted key.</p>
<table class="facts">{facts}</table>
<table class="controls"><thead><tr><th>Status</th><th>Control</th><th>Evidence</th></tr></thead>
<tbody>{rows}</tbody></table>
</body></html>
"""
