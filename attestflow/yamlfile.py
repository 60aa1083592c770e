"""Reading YAML that a person wrote (configs, gate policies, expectation suites), bounded before parsing.

`yaml.safe_load` refuses arbitrary objects but not aliases: a 2 KB file of nested ``*ref``
references (a "billion laughs") expands to gigabytes in memory before any validation runs. A
config has no use for aliases, so they are refused while the file is parsed, before anything
is expanded; the file must also be UTF-8 text of at most `MAX_BYTES`. Every problem is one
`ConfigError` line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from attestflow.errors import ConfigError

MAX_BYTES = 1024 * 1024
"""Largest YAML file read: a release config or a gate policy is a few kilobytes."""


class AliasRefusedError(yaml.YAMLError):
    """The YAML uses an alias (``*name``), which user-written YAML here may not."""


class _NoAliasLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that stops at the first alias instead of expanding it."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise AliasRefusedError(f"YAML aliases (*name) are not allowed (line {mark.line + 1})")
        return super().compose_node(parent, index)


def parse_yaml(text: str) -> Any:
    """The value of the YAML document `text`; raises `AliasRefusedError` at an alias, `yaml.YAMLError` if invalid."""
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass: no arbitrary objects


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document in `path` (a `what`, for the message); a missing, large, non-UTF-8 or invalid file is one line."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ConfigError(f"{path}: {size} bytes, more than the {MAX_BYTES} a {what} may have")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        return parse_yaml(text)
    except AliasRefusedError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{line} is not valid YAML") from None
