"""Keys of the Prefect artifacts a release leaves on its run page.

A key is stable per model name, so the Artifacts page of the Prefect UI keeps one history
per model and kind (``gates-credit-default``, ``lineage-credit-default``,
``training-curves-credit-default``, ...).
"""

from __future__ import annotations

import re


def artifact_key(model_name: str, kind: str = "gates") -> str:
    """A model's stable Prefect artifact key (lowercase letters, digits, dashes), so history accrues."""
    return f"{kind}-" + (re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-") or "model")
