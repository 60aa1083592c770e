"""Typed benchmark results, their JSON form and the printed table.

A figure carries its own alternative and target, so the JSON file and the README table say
what was compared, not only a number; a target is checked here, never in a test.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Target:
    """A bound that a figure's value should meet."""

    op: Literal["<=", ">="]
    bound: float

    def met_by(self, value: float) -> bool:
        """Whether `value` meets the bound (NaN never does)."""
        if math.isnan(value):
            return False
        return value <= self.bound if self.op == "<=" else value >= self.bound

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


@dataclass(frozen=True)
class Figure:
    """One measured figure, next to the alternative it was measured against."""

    key: str
    """Stable identifier within its section, e.g. ``flow_vs_bare``."""
    label: str
    """What was compared, in words."""
    value: float
    """The figure itself: a ratio where there is an alternative, else the measurement."""
    unit: str
    """Unit of `value`: ``x`` for a ratio, else ``s``, ``MB``, ``MB/s`` and so on."""
    measured: str = ""
    """The two sides as measured, in words (``18.2 s vs 17.9 s``)."""
    target: Target | None = None
    met: bool | None = None
    """Whether `target` was met; None when the figure has no target."""
    note: str = ""

    @classmethod
    def of(
        cls,
        key: str,
        label: str,
        value: float,
        unit: str,
        *,
        measured: str = "",
        target: Target | None = None,
        note: str = "",
    ) -> Figure:
        """A figure whose `met` is computed from its target (None when there is no value to judge)."""
        met = target.met_by(value) if target is not None and not math.isnan(value) else None
        return cls(key, label, value, unit, measured, target, met, note)


@dataclass(frozen=True)
class Section:
    """The figures of one benchmark, with the raw measurements behind them."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    """Raw timings, sizes and settings, so every figure can be recomputed."""
    seconds: float = 0.0
    """Wall time the benchmark took."""
    skipped: str | None = None
    """Why the benchmark did not run, or None when it did."""
    measured_at: str = ""


@dataclass(frozen=True)
class Report:
    """All sections of one run of the runner, and where they ran."""

    machine: dict[str, Any]
    quick: bool
    sections: dict[str, Section]
    command: str
    seconds: float


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(report: Report) -> str:
    """The report as indented JSON (NaN and infinities as null)."""
    return json.dumps(_jsonable(report), indent=2, sort_keys=False) + "\n"


def section_from_json(raw: dict[str, Any]) -> Section:
    """A section read back from a report's JSON."""
    figures = []
    for f in raw.get("figures", []):
        target = Target(**f["target"]) if f.get("target") else None
        value = f["value"] if f["value"] is not None else float("nan")
        figures.append(
            Figure(f["key"], f["label"], value, f["unit"], f["measured"], target, f["met"], f["note"])
        )
    return Section(
        name=raw["name"],
        title=raw["title"],
        figures=figures,
        details=raw.get("details", {}),
        seconds=raw.get("seconds", 0.0),
        skipped=raw.get("skipped"),
        measured_at=raw.get("measured_at", ""),
    )


def fmt(value: float, unit: str) -> str:
    """A value with its unit, to a sensible precision."""
    if math.isnan(value):
        return "n/a"
    if unit == "x":
        return f"{value:.3f}x"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    if abs(value) >= 1:
        return f"{value:.2f} {unit}"
    return f"{value:.3g} {unit}"


def table(report: Report) -> Table:
    """The figures of every section as one table."""
    t = Table(title="attestflow benchmarks", show_lines=False)
    for col in ("section", "figure", "value", "measured", "target", "met"):
        t.add_column(col, overflow="fold")
    for section in report.sections.values():
        if section.skipped:
            t.add_row(section.name, section.title, "", f"skipped: {section.skipped}", "", "")
            continue
        for i, f in enumerate(section.figures):
            met = "" if f.met is None else ("[green]yes[/]" if f.met else "[red]no[/]")
            t.add_row(
                section.name if i == 0 else "",
                f.label,
                fmt(f.value, f.unit),
                f.measured,
                str(f.target) if f.target else "",
                met,
            )
    return t


def print_table(report: Report, console: Console | None = None) -> None:
    """Print the figures table."""
    (console or Console()).print(table(report))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(report: Report) -> str:
    """The figures as a Markdown table, for the README."""
    lines = ["| figure | value | measured | target | met |", "|---|---|---|---|---|"]
    for section in report.sections.values():
        if section.skipped:
            lines.append(f"| {_cell(section.title)} | | skipped: {_cell(section.skipped)} | | |")
            continue
        for f in section.figures:
            met = "" if f.met is None else ("yes" if f.met else "**no**")
            target = _cell(str(f.target)) if f.target else ""
            value = _cell(fmt(f.value, f.unit))
            lines.append(f"| {_cell(f.label)} | {value} | {_cell(f.measured)} | {target} | {met} |")
    return "\n".join(lines) + "\n"
