"""The one redaction rule: what of a text is a secret, applied wherever attestflow writes or prints.

A credential reaches attestflow inside a URI (``http://user:TOKEN@host``, a DVC remote, a
database URL), as a query parameter or ``key=value`` pair (``?token=``, ``password=``,
``X-Api-Key: ...``), or in an environment variable named like one (``*_PASSWORD``,
``*_TOKEN``, ``*_SECRET*``, ``*_API_KEY``, ``*_ACCESS_KEY*``). `redact` masks all of these
anywhere inside a longer text (an error sentence, a log line, a config dump) and remembers
each credential it masked (of 8 characters or more), so that it is masked later on its own too. The writers
(`attestflow.records.write_json`, the audit log, the provenance), the log records of every
logger (`install_log_redaction`), the exceptions that leave a stage (`scrubbed`) and the
terminal (`flows.cli.render`) all go through it, so a secret has one rule to get past, not many.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

MASK = "***"
_SCHEME_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#@\s'\"<>`]+)@")
_SECRET_WORD = (
    # S105 (below) takes this pattern of credential names for a credential
    r"(?:(?:[A-Za-z0-9]+[_-])*(?:password|passwd|secret|api[_-]?key|apikey|access[_-]?key|secret[_-]?key"  # noqa: S105
    r"|(?:access|auth|api|private|bearer|session|security|refresh|id|tracking|github|hf)[_-]?token)|token)"
)
"""Names of secrets; a bare ``token`` only on its own, so that a tokenizer's ``pad_token`` is not one."""
_PAIR = re.compile(
    rf"(?P<name>\b(?:{_SECRET_WORD}|authorization)\b)(?P<sep>\"?\s*[=:]\s*\"?)"
    r"(?P<kind>(?:bearer|basic|token)\s+)?(?P<value>[^\s&,;'\"<>)\]}]+)",
    re.IGNORECASE,
)
"""``password=x``, ``token: x``, ``"api_key": "x"``, ``Authorization: Bearer x``, ``?private_token=x``."""
_QUERY = re.compile(
    r"(?P<name>[?&;](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|auth|key|code"
    r"|credential))"
    r"=(?P<value>[^&\s#'\"<>]+)",
    re.IGNORECASE,
)
"""Query parameters that carry a credential under a name too common to mask in free text."""
_PKCS11_URI = re.compile(r"\bpkcs11:(?P<path>[^?\s'\"<>]*)(?P<query>\?[^\s'\"<>]*)?")
"""An RFC 7512 URI: its path names a token and a key (``token=`` is a label there, not a secret); its
query is where a PIN travels (``pin-value=``), so the query is masked whole."""
_SECRET_KEY = re.compile(rf"^{_SECRET_WORD}$", re.IGNORECASE)
_SECRET_ENV = re.compile(
    r"(?:^|_)(?:PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY|SECRET_ACCESS_KEY|SECRET_KEY)$", re.IGNORECASE
)
_MIN_SECRET = 8
"""Shorter values are masked where they stand (in a URI, after ``password=``) but not remembered:
masking every ``pass`` or ``none`` in every later text would hide more than secrets."""
_CONTROL = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)
"""ANSI CSI and OSC sequences, other ESC sequences, every other C0/C1 control character (not tab or
newline) and the bidirectional overrides that make a terminal show text in another order."""

_known: set[str] = set()
_known_lock = threading.Lock()

SECRET_OVERRIDES_ENV = "ATTESTFLOW_SECRET_OVERRIDES"  # noqa: S105 - the variable's name, not a secret
"""Where the CLI hands a release the ``--set`` overrides that carry credentials, by their masked form."""

P = ParamSpec("P")
R = TypeVar("R")


def remember(secret: str) -> None:
    """Mask `secret` wherever it appears from now on in this process."""
    if len(secret) >= _MIN_SECRET:
        with _known_lock:
            _known.add(secret)


def _userinfo(match: re.Match[str]) -> str:
    info = match["userinfo"]
    remember(info)
    _, colon, password = info.partition(":")
    if colon:
        remember(password)
    return f"{match['scheme']}{MASK}@"


def _pair(match: re.Match[str]) -> str:
    value = match["value"]
    if value.startswith(MASK):
        return match[0]
    remember(value)
    return f"{match['name']}{match['sep']}{match['kind'] or ''}{MASK}"


def _query(match: re.Match[str]) -> str:
    remember(match["value"])
    return f"{match['name']}={MASK}"


def _secrets_in_environment() -> list[str]:
    return [v for k, v in _environment().items() if _SECRET_ENV.search(k) and len(v) >= _MIN_SECRET]


def _environment() -> dict[str, str]:
    """A copy of ``os.environ``, taken again when another thread (MLflow's telemetry) changed it meanwhile."""
    while True:
        try:
            return dict(os.environ)
        except (KeyError, RuntimeError):  # a key deleted, or the mapping resized, while it was read
            continue


def _redact_parameters(text: str) -> str:
    out = _SCHEME_USERINFO.sub(_userinfo, text)
    out = _PAIR.sub(_pair, out)
    return _QUERY.sub(_query, out)


def redact(text: str) -> str:
    """`text` with every credential in it masked: URI userinfo, secret parameters, known secret values."""
    if not text:
        return text
    out, last = "", 0
    for uri in _PKCS11_URI.finditer(text):
        out += _redact_parameters(text[last : uri.start()]) + f"pkcs11:{uri['path']}"
        out += f"?{MASK}" if uri["query"] else ""
        last = uri.end()
    out += _redact_parameters(text[last:])
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in [*known, *_secrets_in_environment()]:
        if secret in out:
            out = out.replace(secret, MASK)
    return out


def credentials_in(text: str) -> set[str]:
    """The credentials `redact` would mask in `text`: a URI's userinfo password, secret parameters' values."""
    found = {m["userinfo"].partition(":")[2] for m in _SCHEME_USERINFO.finditer(text)}
    found |= {m["value"] for m in _PAIR.finditer(text)} | {m["value"] for m in _QUERY.finditer(text)}
    return {f for f in found if f and not f.startswith(MASK)}


def redact_json(value: Any) -> Any:
    """Plain JSON data with every string redacted, and the value of every secret-named key masked."""
    if isinstance(value, dict):
        return {
            k: MASK if isinstance(v, str) and v and _SECRET_KEY.match(str(k)) else redact_json(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_json(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


def redact_uri(uri: str) -> str:
    """A URI with its credentials and its query string (where secrets travel) removed; nothing else changes."""
    return redact(uri.split("?", 1)[0] if "://" in uri else uri)


def terminal_safe(text: str) -> str:
    """`text` redacted and stripped of control characters (ESC/CSI/OSC sequences, C0 and C1), tab and newline kept."""
    return _CONTROL.sub("", redact(text))


def scrub_exception(e: BaseException) -> BaseException:
    """Redact the message of `e` and of the exceptions chained to it, in place; returns `e`."""
    seen: set[int] = set()
    exc: BaseException | None = e
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        try:
            exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
            for name, value in vars(exc).items():
                if isinstance(value, str):
                    setattr(exc, name, redact(value))
                elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                    setattr(exc, name, [redact(v) for v in value])
        except (AttributeError, TypeError):  # a read-only attribute or a built-in without __dict__
            pass
        exc = exc.__cause__ or exc.__context__
    return e


def scrubbed(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, whose exceptions leave with their messages redacted (before Prefect records or logs them)."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            scrub_exception(e)
            raise

    return call


class _RedactingRecords:
    """A log record factory: every record's message and traceback redacted and stripped of control characters."""

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the handler's to report, as it would be anyway
            return record
        clean = terminal_safe(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = terminal_safe(text)
        return record


def install_log_redaction() -> None:
    """Redact every log record from now on (Prefect's run logs, MLflow's, DVC's); idempotent."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingRecords):
        logging.setLogRecordFactory(_RedactingRecords(factory))


def hide_overrides(overrides: list[str]) -> tuple[list[str], dict[str, str]]:
    """The ``--set`` overrides safe to record (credentials masked), and each original by its masked form."""
    shown = [redact(o) for o in overrides]
    return shown, {s: o for s, o in zip(shown, overrides, strict=True) if s != o}


@contextmanager
def secret_overrides(hidden: dict[str, str]) -> Iterator[None]:
    """Hand `hidden` (from `hide_overrides`) to a release started in this process, through the environment."""
    before = os.environ.get(SECRET_OVERRIDES_ENV)
    if hidden:
        os.environ[SECRET_OVERRIDES_ENV] = json.dumps(hidden)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SECRET_OVERRIDES_ENV, None)
        else:
            os.environ[SECRET_OVERRIDES_ENV] = before


def reveal_overrides(shown: list[str]) -> list[str]:
    """The overrides a release was given, with the credentials `secret_overrides` handed over put back."""
    try:
        hidden = json.loads(os.environ.get(SECRET_OVERRIDES_ENV) or "{}")
    except ValueError:
        hidden = {}
    if not isinstance(hidden, dict):
        hidden = {}
    return [str(hidden.get(s, s)) for s in shown]
