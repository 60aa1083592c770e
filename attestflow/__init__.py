"""Shared contracts of attestflow: configuration, evidence records, digests and the workspace.

Everything here sits below `tasks/` (one module per release stage) and `flows/` (which
compose the stages); nothing here imports either of them.
"""

__version__ = "0.1.0"
