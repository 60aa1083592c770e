"""`attestflow init`: the files a release of a user's own table needs, inferred from the table.

`project.init_project` is the entry point; `table` checks the table and infers features,
classes and the model kind, `profile` writes the expectation suite, `baseline` the gate policy
with thresholds from a baseline model, `release` the release config.
"""

from attestflow.scaffold.project import InitResult, init_project

__all__ = ["InitResult", "init_project"]
