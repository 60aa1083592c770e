"""Errors that the CLI turns into exit codes instead of tracebacks."""


class BadInputError(Exception):
    """Bad input or configuration: the CLI prints the message and exits 2."""


class ConfigError(BadInputError):
    """A configuration file is missing, unreadable or invalid."""


class GateFailedError(Exception):
    """A gate or a verification said no: the CLI prints the reasons and exits 1."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons
