"""Release stages: one module per stage, each a plain function plus a thin Prefect task.

``tasks/X.py`` exposes ``X()`` (tested directly) and ``X_task``; reusable helpers and records
live in ``attestflow/``, and only ``flows/`` import these modules (see `attestflow`).

A stage's signature reads in one order: ``stage(section, *inputs, *, context)``.

1. ``section``: the stage's own config section (a whole `ReleaseConfig` only for the stages
   that pass most of it on: ``sign``, ``fine_tune``); left out by stages with no settings of
   their own (``register``, ``publish_gates``);
2. ``inputs``: what earlier stages produced, as their records or the paths taken from them;
3. ``context``: what the release context supplies (model name, workspace, release folder
   ``out_dir``, tracking URI, trusted public key, other config sections such as ``data`` and
   ``model``), keyword-only and passed by name from the release body.

Run-specific values (``out_dir``, ``run_tags``) are named so that the content-keyed cache
leaves them out of a stage's key (`attestflow.caching.RUN_SPECIFIC`).
"""
