"""Line and bar charts as SVG text, for the training curves and attributions on the Prefect run page.

A few panels of lines with nice axis ticks, a legend, faint vertical markers and one starred
point: all the run page needs, written out directly. Drawing the same with matplotlib took
1.2 s in a fresh process (import and font cache) and 0.35 s after that, inside the training
stage; this takes about a millisecond.

The SVG uses presentation attributes only and plain ``<text>``: it is shown as an ``<img>``
(a ``data:`` URI), so the browser draws the text with its own sans-serif font.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape as _escape
from xml.sax.saxutils import quoteattr

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
PANEL_W, HEIGHT = 520, 340
TOP, BOTTOM, LEFT, RIGHT = 56, 46, 62, 16
"""Margins of a panel's plotting area inside its 520 x 340 cell (title and ticks live there)."""


@dataclass
class Series:
    """One line: its points, colour, and whether it is dashed."""

    label: str
    points: list[tuple[float, float]]
    colour: str
    dashed: bool = False
    markers: bool = False


@dataclass
class Panel:
    """One plot: its lines, optional vertical guides (x values) and one starred, annotated point."""

    title: str
    x_label: str
    series: list[Series]
    guides: list[float] = field(default_factory=list)
    star: tuple[float, float, str] | None = None


def _text(x: float, y: float, s: str, size: int = 10, anchor: str = "middle", **attrs: str) -> str:
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attrs.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>{_escape(s)}</text>'
    )


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10)), key=lambda st: abs(math.log(st / raw)))
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    k = first
    while k * step <= hi + step * 1e-9:
        ticks.append(round(k * step, 12))
        k += 1
    return ticks


def _span(values: Sequence[float]) -> tuple[float, float]:
    """The range to draw `values` in: their extent with 5% to spare, never empty."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if hi == lo:
        pad = abs(lo) * 0.1 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def _tick_label(v: float) -> str:
    return f"{v:.4g}"


def _panel(p: Panel, x0: float) -> list[str]:
    """The SVG elements of panel `p`, drawn in the cell that starts at `x0`."""
    left, right, top, bottom = x0 + LEFT, x0 + PANEL_W - RIGHT, TOP, HEIGHT - BOTTOM
    xs = [x for s in p.series for x, _ in s.points]
    ys = [y for s in p.series for _, y in s.points]
    (xlo, xhi), (ylo, yhi) = _span(xs), _span(ys)

    def px(x: float) -> float:
        return left + (x - xlo) / (xhi - xlo) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - ylo) / (yhi - ylo) * (bottom - top)

    out = [_text((left + right) / 2, top - 8, p.title, 12)]
    for y in nice_ticks(ylo, yhi):
        out.append(f'<line x1="{left}" x2="{right}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#e5e5e5"/>')
        out.append(_text(left - 6, py(y) + 3.5, _tick_label(y), anchor="end"))
    for x in nice_ticks(xlo, xhi):
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" y2="{bottom}" stroke="#e5e5e5"/>')
        out.append(_text(px(x), bottom + 14, _tick_label(x)))
    for g in p.guides:
        if xlo <= g <= xhi:
            out.append(f'<line x1="{px(g):.1f}" x2="{px(g):.1f}" y1="{top}" y2="{bottom}" stroke="#c8c8c8"/>')
    out.append(
        f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#555"/>'
    )
    out.append(_text((left + right) / 2, bottom + 34, p.x_label, 11))
    for s in p.series:
        pts = [(x, y) for x, y in s.points if math.isfinite(x) and math.isfinite(y)]
        if not pts:
            continue
        dash = ' stroke-dasharray="6 3"' if s.dashed else ""
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{s.colour}" stroke-width="1.6"{dash}/>')
        if s.markers:
            out.extend(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{s.colour}"/>' for x, y in pts
            )
    if p.star is not None and all(math.isfinite(v) for v in p.star[:2]):
        sx, sy = px(p.star[0]), py(p.star[1])
        star = " ".join(
            f"{sx + r * math.sin(k * math.pi / 5):.1f},{sy - r * math.cos(k * math.pi / 5):.1f}"
            for k, r in zip(range(10), [7.0, 3.0] * 5, strict=True)
        )
        out.append(f'<polygon points="{star}" fill="black"/>')
        anchor = "end" if sx > (left + right) / 2 else "start"
        out.append(_text(sx + (-8 if anchor == "end" else 8), sy - 10, p.star[2], 9, anchor))
    if p.series:  # legend, top right, on a white box so that lines under it do not cross the labels
        out.append(
            f'<rect x="{right - 124}" y="{top + 4}" width="120" height="{14 * len(p.series) + 6}" '
            'fill="white" fill-opacity="0.85" stroke="#ddd"/>'
        )
    for i, s in enumerate(p.series):
        ly = top + 14 + 14 * i
        dash = ' stroke-dasharray="6 3"' if s.dashed else ""
        out.append(
            f'<line x1="{right - 118}" x2="{right - 96}" y1="{ly - 3}" y2="{ly - 3}" '
            f'stroke="{s.colour}" stroke-width="1.6"{dash}/>'
        )
        out.append(_text(right - 90, ly, s.label, 9, "start"))
    return out


def line_chart_svg(title: str, panels: Sequence[Panel]) -> bytes:
    """`panels` side by side under `title`, as a standalone SVG document."""
    width = PANEL_W * max(1, len(panels))
    body = [
        f'<rect width="{width}" height="{HEIGHT}" fill="white"/>',
        _text(width / 2, 22, title, 14, font_weight="bold"),
    ]
    for i, p in enumerate(panels):
        body += _panel(p, i * PANEL_W)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" '
        f'viewBox="0 0 {width} {HEIGHT}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" fill="#222">\n'
        + "\n".join(body)
        + "\n</svg>\n"
    ).encode()


BAR_ROW, BAR_LABEL_W = 22, 170
"""Height of one bar's row, and the width kept left of the bars for their labels."""


def bar_chart_svg(title: str, bars: Sequence[tuple[str, float]], x_label: str, width: int = 640) -> bytes:
    """Horizontal bars of non-negative values, one per (label, value), top to bottom in the given order."""
    left, right, top = BAR_LABEL_W, width - 70, TOP - 16
    height = top + BAR_ROW * max(1, len(bars)) + BOTTOM
    finite = [v for _, v in bars if math.isfinite(v)]
    hi = max([*finite, 0.0]) or 1.0

    def px(v: float) -> float:
        return left + max(0.0, v) / hi * (right - left)

    body = [
        f'<rect width="{width}" height="{height}" fill="white"/>',
        _text(width / 2, 22, title, 14, font_weight="bold"),
    ]
    bottom = top + BAR_ROW * len(bars)
    for t in nice_ticks(0.0, hi):
        body.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{bottom}" stroke="#e5e5e5"/>')
        body.append(_text(px(t), bottom + 14, _tick_label(t)))
    for i, (label, value) in enumerate(bars):
        y = top + BAR_ROW * i
        v = value if math.isfinite(value) else 0.0
        shown = label if len(label) <= 26 else label[:25] + "…"
        body.append(_text(left - 6, y + BAR_ROW / 2 + 4, shown, 11, "end"))
        body.append(
            f'<rect x="{left}" y="{y + 3}" width="{px(v) - left:.1f}" height="{BAR_ROW - 6}" fill="{PALETTE[0]}"/>'
        )
        body.append(_text(px(v) + 4, y + BAR_ROW / 2 + 4, _tick_label(value), 9, "start"))
    body.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#555"/>')
    body.append(_text((left + right) / 2, bottom + 32, x_label, 11))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" fill="#222">\n'
        + "\n".join(body)
        + "\n</svg>\n"
    ).encode()
