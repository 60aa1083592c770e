"""``--set stage.key=value`` overrides, applied to the raw YAML of a release config before validation.

Applied before validation, an override is checked exactly like the file: a misspelt key is an
unknown key, a value of the wrong type is refused with the key's name.
"""

from __future__ import annotations

from typing import Any

import yaml

from attestflow.errors import ConfigError
from attestflow.yamlfile import AliasRefusedError, parse_yaml


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into a key path and a YAML-typed value."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. fine_tune.epochs=3")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except AliasRefusedError as e:
        raise ConfigError(f"--set {key.strip()}: {e}") from None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``a.b=value`` in a copy of the raw config mapping."""
    out: dict[str, Any] = _deep_copy(raw)
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
    return out


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj
