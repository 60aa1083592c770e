"""Stage `fine_tune`: fine-tune the base model on the snapshot, resumably, on a GPU or the CPU.

The training itself is `attestflow.training` (reusable, and run by ``torchrun`` workers
without Prefect); this module is the stage the release flow calls: `fine_tune` trains in this
process, `fine_tune_task` trains in this process or under ``torchrun`` when
``fine_tune.processes`` > 1.
"""

from __future__ import annotations

from prefect import task

from attestflow.training.fine_tuning import fine_tune
from attestflow.training.launcher import train_release

__all__ = ["fine_tune", "fine_tune_task"]

fine_tune_task = task(name="fine_tune")(train_release)
