"""Errors that the CLI turns into exit codes instead of tracebacks.

The exit-code contract: 0 done, 1 a gate or a verification said no (`GateFailedError`),
2 bad input or configuration (`BadInputError`), 3 something the run needs could not be
reached (`UnavailableError`: the orchestrator, the registry, the DVC remote), so that a CI
job can tell a refusal from an outage.
"""


class BadInputError(Exception):
    """Bad input or configuration: the CLI prints the message and exits 2."""


class ConfigError(BadInputError):
    """A configuration file is missing, unreadable or invalid."""


class GateFailedError(Exception):
    """A gate or a verification said no: the CLI prints the reasons and exits 1."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class UnavailableError(Exception):
    """A service the run needs could not be reached or failed: the CLI prints why and exits 3."""


class RegistryUnavailableError(UnavailableError):
    """The model registry (MLflow tracking server or store) failed to answer."""
