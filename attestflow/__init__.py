"""attestflow: everything reusable about a signed, gated model release.

Where code belongs (a rule, not a habit):

- ``attestflow/`` holds everything reusable: configuration, evidence records
  (`attestflow.records`), digests, keys, verification, the audit log, the release context
  (`attestflow.context`). It defines no Prefect task or flow and imports neither ``tasks/``
  nor ``flows/``.
- ``tasks/`` holds one module per release stage: ``tasks/X.py`` exposes the plain function
  ``X()`` and its thin Prefect wrapper ``X_task``, and is imported only by flows (and tests).
- ``flows/`` only compose: they build the release context and call the stages.
"""

__version__ = "0.1.0"
