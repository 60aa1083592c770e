"""Training progress and training curves on the Prefect run page.

The training loop makes one `TrainingProgress`, calls `update` every optimizer step or so and
`finish` once with the points it logged. Inside a Prefect flow or task run that keeps a progress
artifact (key ``training-progress-<model>``) up to date, with at most one API call per
`min_interval_s` plus the last step, and at the end publishes the training curves as a markdown
artifact (key ``training-curves-<model>``).

The curves are an SVG plot inlined as a ``data:`` URI in a markdown image, because that is what
the open-source Prefect UI shows: it renders a markdown image as a plain ``<img>``, whereas raw
``<svg>`` HTML goes through a sanitizer that strips ``style`` attributes (`attestflow.plot` draws it),
and an image artifact prints its whole URL under the picture. The image is the first line of the
artifact's description, which is what the artifact's card on the flow run page (Artifacts tab)
renders, so the plot is on the run page itself; the artifact's own page shows it above a table
of the metrics at the end of each epoch.

Outside a Prefect run (unit tests, bare benchmark scripts) both methods do nothing, and a failing
API call is logged as a warning: progress reporting never stops training.
"""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from attestflow.artifacts import artifact_key
from attestflow.plot import PALETTE, Panel, Series, line_chart_svg

log = logging.getLogger(__name__)

MAX_PLOT_POINTS = 500
"""Longer histories are thinned to about this many points (the last one always kept)."""
MAX_TABLE_ROWS = 50


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter[Any]:
    """The Prefect run's logger inside a flow or task run, else the module `name`'s."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)


def in_prefect_run() -> bool:
    """Whether this code runs inside a Prefect flow run or task run (so artifacts have a home)."""
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def metric_names(history: Sequence[dict[str, float]]) -> list[str]:
    """The metric names in `history`, in the order they first appear (not ``step`` or ``epoch``)."""
    names: dict[str, None] = {}
    for point in history:
        names.update((k, None) for k in point if k not in ("step", "epoch"))
    return list(names)


def thinned(history: Sequence[dict[str, float]], limit: int) -> list[dict[str, float]]:
    """Every k-th point so that about `limit` remain, always including the last one."""
    stride = max(1, math.ceil(len(history) / limit))
    points = list(history[::stride])
    if history and points[-1] is not history[-1]:
        points.append(history[-1])
    return points


def curves_svg(history: Sequence[dict[str, float]], title: str) -> bytes:
    """The training curves as an SVG: losses on the left, the other metrics on the right.

    Train and validation curves of one metric share a colour (train solid, validation dashed);
    epoch boundaries are faint vertical lines, and the lowest ``val_loss`` is starred.
    """
    points = thinned(history, MAX_PLOT_POINTS)
    has_steps = all("step" in p for p in points)
    xs = [p["step"] if has_steps else float(i) for i, p in enumerate(points)]
    names = metric_names(points)
    losses = [n for n in names if "loss" in n]
    groups = [group for group in (losses, [n for n in names if n not in losses]) if group]
    bases = list(dict.fromkeys(n.removeprefix("train_").removeprefix("val_") for n in names))
    guides = [
        (xs[i - 1] + xs[i]) / 2
        for i in range(1, len(points))
        if "epoch" in points[i] and points[i].get("epoch") != points[i - 1].get("epoch")
    ]
    panels = []
    for group in groups:
        series = []
        star = None
        for name in group:
            # A metric logged only at some points (validation once per epoch) is drawn
            # through its own points, not broken up by the points where it is absent.
            seen = [(x, p[name]) for x, p in zip(xs, points, strict=True) if name in p]
            base = name.removeprefix("train_").removeprefix("val_")
            colour = PALETTE[bases.index(base) % len(PALETTE)]
            series.append(Series(name, seen, colour, name.startswith("val_"), len(seen) <= 30))
            if name == "val_loss" and seen:
                bx, by = min(seen, key=lambda xy: math.inf if math.isnan(xy[1]) else xy[1])
                star = (bx, by, f"lowest val_loss {_fmt(by)}")
        x_label = "optimizer step" if has_steps else "logged point"
        panels.append(Panel("loss" if group is losses else "metrics", x_label, series, guides, star))
    return line_chart_svg(title, panels)


def image_markdown(svg: bytes, alt: str) -> str:
    """A markdown image of `svg` inlined as a base64 ``data:`` URI (no file, no server to fetch from)."""
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg).decode('ascii')})"


def epoch_rows(history: Sequence[dict[str, float]]) -> list[dict[str, float]]:
    """The last point of every epoch (or, without epochs, up to `MAX_TABLE_ROWS` evenly spread points)."""
    if history and all("epoch" in p for p in history):
        last: dict[float, dict[str, float]] = {}
        for p in history:
            last[p["epoch"]] = p
        return list(last.values())[-MAX_TABLE_ROWS:]
    return thinned(history, MAX_TABLE_ROWS)


def summary_line(model_name: str, history: Sequence[dict[str, float]]) -> str:
    """One line on how training ended: epochs, steps and the last value of every metric."""
    if not history:
        return f"{model_name}: no training points were logged"
    end = history[-1]
    where = ", ".join(f"{k} {int(end[k])}" for k in ("epoch", "step") if k in end)
    values = ", ".join(f"{n} {_fmt(end[n])}" for n in metric_names(history) if n in end)
    return f"{model_name}: training ended at {where}; {values}"


def curves_markdown(model_name: str, history: Sequence[dict[str, float]]) -> tuple[str, str]:
    """The curves artifact's (markdown, description): the plot leads the description, the numbers the body."""
    summary = summary_line(model_name, history)
    if not history:
        return f"# Training curves of {model_name}\n\n{summary}.\n", summary
    plot = image_markdown(
        curves_svg(history, f"{model_name}: training curves"), f"training curves of {model_name}"
    )
    rows = epoch_rows(history)
    columns = [c for c in ("epoch", "step") if any(c in r for r in rows)] + metric_names(rows)
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    body = "\n".join("| " + " | ".join(_fmt(r[c]) if c in r else "-" for c in columns) + " |" for r in rows)
    caption = "at the end of each epoch" if "epoch" in columns else "at evenly spread points"
    markdown = f"# Training curves of {model_name}\n\nMetrics {caption}:\n\n{header}\n{body}\n"
    return markdown, f"{plot}\n\n{summary}"


class TrainingProgress:
    """What a training loop reports to the Prefect run page: a progress bar, then the curves."""

    def __init__(self, model_name: str, total_steps: int, *, min_interval_s: float = 2.0) -> None:
        self.model_name = model_name
        self.total_steps = max(1, total_steps)
        self.min_interval_s = min_interval_s
        self.progress_key = artifact_key(model_name, "training-progress")
        self.curves_key = artifact_key(model_name, "training-curves")
        self.enabled = in_prefect_run()
        self.api_calls = 0
        """Calls made to the Prefect API so far (for the throttling to be seen)."""
        self.failures = 0
        """Of those, the calls that failed (each logged; training went on)."""
        self._progress_id: UUID | None = None
        self._last_call = -math.inf
        self._warned = False

    def update(self, step: int, epoch: int, metrics: dict[str, float]) -> None:
        """Report `step` of `total_steps`; throttled to one API call per `min_interval_s`, except the last step."""
        if not self.enabled:
            return
        now = time.monotonic()
        if step < self.total_steps and now - self._last_call < self.min_interval_s:
            return
        self._last_call = now
        values = "".join(f", {k} {_fmt(v)}" for k, v in metrics.items())
        self._progress(
            100.0 * min(step, self.total_steps) / self.total_steps,
            f"{self.model_name}: epoch {epoch}, step {step} of {self.total_steps}{values}",
        )

    def finish(self, history: list[dict[str, float]]) -> None:
        """Mark the progress complete and publish the training curves of `history`."""
        if not self.enabled:
            return
        summary = summary_line(self.model_name, history)
        self._progress(100.0, summary)
        try:
            from prefect.artifacts import create_markdown_artifact

            markdown, description = curves_markdown(self.model_name, history)
            self.api_calls += 1
            create_markdown_artifact(markdown=markdown, key=self.curves_key, description=description)
        except Exception as e:  # never fail training over a plot
            self._warn("the training curves", e)

    def _progress(self, percent: float, description: str) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        try:
            self.api_calls += 1
            if self._progress_id is None:
                created = create_progress_artifact(percent, key=self.progress_key, description=description)
                # Prefect's artifact functions return a coroutine when called from async code;
                # a training loop is synchronous, so this is the artifact's id.
                if not isinstance(created, UUID):
                    raise TypeError("TrainingProgress is for synchronous training loops")
                self._progress_id = created
            else:
                update_progress_artifact(self._progress_id, percent, description=description)
        except Exception as e:  # the API being away must not stop training
            self._warn("training progress", e)

    def _warn(self, what: str, e: Exception) -> None:
        """Warn once on the run's log (later failures go to debug, so a long run is not flooded)."""
        self.failures += 1
        logger: Any = log
        try:
            from prefect.logging import get_run_logger

            logger = get_run_logger()
        except Exception:  # noqa: S110 - no run logger: the module logger below will do
            pass
        message = f"could not publish {what} to Prefect ({type(e).__name__}: {e}); training goes on"
        if self._warned:
            logger.debug(message)
        else:
            logger.warning(message)
            self._warned = True
