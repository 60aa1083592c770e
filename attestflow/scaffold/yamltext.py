"""YAML values written inline into the commented files that `attestflow init` generates.

The files are assembled as text so that each key can carry a comment; every value still goes
through PyYAML, so a class named ``yes`` or ``1`` comes out quoted and reads back as a string.
"""

from __future__ import annotations

from typing import Any

import yaml


def inline(value: Any) -> str:
    """`value` as one line of YAML in flow style (``[a, 'yes', 3]``, ``{column: x}``, ``'1'``)."""
    text = yaml.safe_dump(
        value, default_flow_style=True, width=1_000_000, sort_keys=False, allow_unicode=True
    )
    return text.removesuffix("\n").removesuffix("\n...").strip()


def block_list(key: str, values: list[Any], indent: int) -> str:
    """``key:`` followed by one ``- value`` line per item, at `indent` spaces."""
    pad = " " * indent
    return "\n".join([f"{pad}{key}:", *(f"{pad}  - {inline(v)}" for v in values)])
