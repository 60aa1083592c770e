"""Errors that the CLI turns into exit codes instead of tracebacks.

The exit-code contract: 0 done, 1 a gate or a verification said no (`GateFailedError`),
2 bad input or configuration (`BadInputError`), 3 something the run needs could not be
reached (`UnavailableError`: the orchestrator, the registry, the DVC remote), so that a CI
job can tell a refusal from an outage. `exit_code_of` is that contract, for the CLI and for
the audit log's ``release_failed`` entries alike.
"""


class BadInputError(Exception):
    """Bad input or configuration: the CLI prints the message and exits 2."""


class ConfigError(BadInputError):
    """A configuration file is missing, unreadable or invalid."""


class GateFailedError(Exception):
    """A gate or a verification said no: the CLI prints the reasons and exits 1."""

    def __init__(self, reasons: list[str], *, audited: bool = False) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons
        self.audited = audited
        """True when the refusal is already in the audit log (``release_refused``): not recorded twice."""


class UnavailableError(Exception):
    """A service the run needs could not be reached or failed: the CLI prints why and exits 3."""


class RegistryUnavailableError(UnavailableError):
    """The model registry (MLflow tracking server or store) failed to answer."""


def exit_code_of(e: BaseException) -> int | None:
    """The exit code the contract gives a domain error: 1, 2 or 3; None for any other error (a crash)."""
    if isinstance(e, GateFailedError):
        return 1
    if isinstance(e, BadInputError):
        return 2
    if isinstance(e, UnavailableError):
        return 3
    return None


def message_line(e: BaseException) -> str:
    """The first line of an exception's message; its type's name when it has none."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def first_line(e: BaseException) -> str:
    """An exception as its type and the first line of its message."""
    return f"{type(e).__name__}: {message_line(e)}" if str(e).strip() else type(e).__name__
