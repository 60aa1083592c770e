"""Temporary: replaced by the Prefect progress-artifact implementation on the `ui` branch."""

from __future__ import annotations


class TrainingProgress:
    def __init__(self, model_name: str, total_steps: int, *, min_interval_s: float = 2.0) -> None:
        self.model_name = model_name

    def update(self, step: int, epoch: int, metrics: dict[str, float]) -> None:
        return None

    def finish(self, history: list[dict[str, float]]) -> None:
        return None
