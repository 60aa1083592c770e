"""TrainingProgress outside Prefect, and the curves artifact's content."""

from __future__ import annotations

import base64
import time

from attestflow.progress import TrainingProgress, curves_markdown, epoch_rows, thinned


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
