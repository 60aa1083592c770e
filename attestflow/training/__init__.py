"""Training a model through its adapter, reusable by any stage, script or benchmark.

The release's `fine_tune` stage (`tasks/fine_tune.py`) is a thin Prefect task over this
package; ``torchrun`` workers run it without the task (`launcher`). `checkpoints` writes and
verifies resumable state, `loop` trains, `fine_tuning` is one whole resumable, tracked run.
"""
