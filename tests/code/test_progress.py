"""TrainingProgress outside Prefect, and the curves artifact's content."""

from __future__ import annotations

import base64
import math
import time
import xml.etree.ElementTree as ET

from attestflow.plot import nice_ticks
from attestflow.progress import TrainingProgress, curves_markdown, curves_svg, epoch_rows, thinned

SVG = "{http://www.w3.org/2000/svg}"


def test_outside_a_prefect_run_progress_is_a_silent_no_op() -> None:
    progress = TrainingProgress("credit", total_steps=1000, min_interval_s=0.0)
    started = time.perf_counter()
    for step in range(1, 1001):
        progress.update(step, 1 + step // 100, {"train_loss": 1.0 / step})
    progress.finish([{"step": 1000.0, "epoch": 10.0, "train_loss": 0.001}])
    assert not progress.enabled and progress.api_calls == 0
    assert time.perf_counter() - started < 1.0


def test_the_curves_lead_the_description_and_the_numbers_fill_the_body() -> None:
    history = [
        {"step": float(s), "epoch": float(1 + (s - 1) // 5), "train_loss": 1.0 / s}
        | ({"val_loss": 1.2 / s, "val_accuracy": 0.5 + s / 100} if s % 5 == 0 else {})
        for s in range(1, 21)
    ]
    markdown, description = curves_markdown("credit", history)
    plot, summary = description.split("\n\n")
    svg = base64.b64decode(plot.removeprefix("![training curves of credit](data:image/svg+xml;base64,")[:-1])
    assert b"<svg" in svg and summary.startswith("credit: training ended at epoch 4, step 20;")
    assert "| epoch | step | train_loss | val_loss | val_accuracy |" in markdown
    assert markdown.count("\n| ") == 5  # header and one row per epoch
    assert "| 4 | 20 | 0.05 | 0.06 | 0.7 |" in markdown
    assert [r["step"] for r in epoch_rows(history)] == [5.0, 10.0, 15.0, 20.0]


def test_long_histories_are_thinned_but_keep_their_last_point() -> None:
    history = [{"step": float(s), "train_loss": 1.0} for s in range(1, 10_001)]
    points = thinned(history, 500)
    assert 500 <= len(points) <= 501 and points[0]["step"] == 1.0 and points[-1]["step"] == 10_000.0
    markdown, _ = curves_markdown("big", history)
    assert "evenly spread points" in markdown and markdown.count("\n| ") <= 52


def test_no_points_make_no_plot() -> None:
    markdown, description = curves_markdown("credit", [])
    assert "no training points were logged" in markdown and "data:" not in description


def _svg(history: list[dict[str, float]]) -> ET.Element:
    return ET.fromstring(curves_svg(history, "credit: training curves").split(b"\n", 1)[1])


def test_the_plot_draws_each_metric_and_stars_the_lowest_validation_loss() -> None:
    history = [
        {"step": float(s), "epoch": float(1 + (s - 1) // 10), "train_loss": 1.0 / s}
        | ({"val_loss": [0.9, 0.4, 0.5][s // 10 - 1], "val_accuracy": s / 40} if s % 10 == 0 else {})
        for s in range(1, 31)
    ]
    svg = _svg(history)
    assert svg.get("width") == "1040"  # two panels: losses, then the other metrics
    lines = svg.findall(f"{SVG}polyline")
    assert len(lines) == 3 and [ln.get("stroke-dasharray") for ln in lines] == [None, "6 3", "6 3"]
    assert lines[0].get("stroke") == lines[1].get("stroke") != lines[2].get("stroke")  # loss pair, one colour
    assert len(lines[0].get("points", "").split()) == 30 and len(lines[1].get("points", "").split()) == 3
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "lowest val_loss 0.4" in texts and "optimizer step" in texts and "val_accuracy" in texts
    (star,) = svg.findall(f"{SVG}polygon")
    # the star is at step 20, the second of the three val_loss points
    val_xs = [float(xy.split(",")[0]) for xy in lines[1].get("points", "").split()]
    star_xs = [float(xy.split(",")[0]) for xy in star.get("points", "").split()]
    assert min(star_xs) < val_xs[1] < max(star_xs)


def test_the_plot_survives_a_flat_or_broken_history() -> None:
    flat = _svg([{"step": float(s), "train_loss": 0.5} for s in range(1, 4)])
    assert len(flat.findall(f"{SVG}polyline")) == 1 and flat.get("width") == "520"
    broken = _svg([{"step": 1.0, "train_loss": math.nan}, {"step": 2.0, "train_loss": math.inf}])
    assert broken.findall(f"{SVG}polyline") == []  # nothing finite to draw, still a valid image


def test_axis_ticks_are_round_numbers_covering_the_range() -> None:
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(3.0, 152.0) == [25.0, 50.0, 75.0, 100.0, 125.0, 150.0]
    assert nice_ticks(0.0123, 0.0131, 4) == [0.0124, 0.0126, 0.0128, 0.013]
    assert nice_ticks(1.0, 1.0) == [1.0]
