"""The model card: human text written by people, beside numbers measured by the release, in one signed document.

Compliance tools fill model-card templates from self-declared YAML; here only the sections a
machine cannot know (intended use, out-of-scope uses, limitations, ethical considerations,
owners) come from ``configs/model_card.yaml`` (`ModelCardText`, strict). Everything else is
taken from the release's evidence: model and data digests, training, held-out metrics with
bootstrap intervals, per-group metrics, every gate decision and the attributions of the
explain stage. The card's JSON shape is the pydantic model `ModelCard`; every card is
validated against the JSON schema it emits with `jsonschema` (not by pydantic itself), and
the release signs it as a DSSE statement in the version's evidence (`MODEL_CARD` predicate).
`attestflow.model_card_render` turns a card into markdown.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from attestflow.config import describe_validation_error
from attestflow.errors import ConfigError
from attestflow.records import finite
from attestflow.yamlfile import read_yaml

SCHEMA_VERSION = "https://attestflow.dev/model-card/v1"
"""The card's ``schema`` field, and the predicate type of the signed statement that carries it."""
SECTIONS = ("intended_use", "out_of_scope_uses", "limitations", "ethical_considerations")
"""The human sections every card file must be able to fill (`ModelCardText.missing` tells which are empty)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Owner(_Strict):
    """Who answers for the model."""

    name: str = Field(min_length=1)
    contact: str = ""


class EthicalConsideration(_Strict):
    """A risk people identified, and what the release does about it."""

    name: str = Field(min_length=1)
    mitigation: str = ""


class ModelCardText(_Strict):
    """The sections of ``configs/model_card.yaml``: written and reviewed by people, versioned with the code."""

    overview: str = ""
    intended_use: str = ""
    intended_users: list[str] = Field(default_factory=list)
    out_of_scope_uses: list[str] = Field(default_factory=list)
    limitations: list[str] = Field(default_factory=list)
    ethical_considerations: list[EthicalConsideration] = Field(default_factory=list)
    owners: list[Owner] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)

    def missing(self, required: list[str]) -> list[str]:
        """The `required` sections that are absent or empty (a name the card does not have counts as missing)."""
        return [name for name in required if not _filled(getattr(self, name, None))]


def _filled(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return bool(value)


def load_model_card_text(path: Path) -> ModelCardText:
    """Read and validate a model card text file; any problem is one `ConfigError` line (exit 2)."""
    raw = read_yaml(Path(path), "model card")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)}, ...)")
    try:
        return ModelCardText.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(str(path), e)) from None


def card_text(path: Path) -> ModelCardText:
    """The model card text at `path`, or an empty one (every section missing) when there is no such file."""
    return load_model_card_text(path) if Path(path).exists() else ModelCardText()


class ModelDetails(_Strict):
    name: str
    version: str
    uri: str
    adapter: str
    architecture: str
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bundle_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signing_key_id: str
    opset: int


class DataSnapshot(_Strict):
    path: str
    dvc_md5: str
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rows: int = Field(ge=0)
    held_out_rows: int = Field(ge=0)
    features: list[str]
    label: str
    sensitive: str | None
    test_fraction: float


class Training(_Strict):
    config_sha256: str
    mlflow_run_id: str
    epochs: int
    device: str
    precision: str
    trained_from: str
    base_checkpoint_sha256: str
    metrics: dict[str, float | None]


class Metric(_Strict):
    """A held-out metric of the ONNX model with its percentile bootstrap interval."""

    name: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float = Field(gt=0, lt=1)
    resamples: int = Field(ge=1)
    rows: int = Field(ge=1)


class GroupMetrics(_Strict):
    group: str
    rows: int = Field(ge=0)
    accuracy: float | None
    selection_rate: float | None
    """Share of the group's rows predicted as the positive (last) class."""


class Groups(_Strict):
    attribute: str | None
    groups: list[GroupMetrics]


class Decision(_Strict):
    gate: str
    metric: str
    passed: bool
    value: float | None
    threshold: float | None
    reason: str


class Gates(_Strict):
    passed: bool
    policy_sha256: str
    decisions: list[Decision]


class Attribution(_Strict):
    feature: str
    mean_abs: float | None
    share: float | None


class Attributions(_Strict):
    method: str
    why: str = ""
    rows: int | None = None
    top: list[Attribution]


class ModelCard(_Strict):
    """The card as JSON: what `build_model_card` returns and `validate_card` checks."""

    schema_: str = Field(alias="schema", pattern=r"^https://attestflow\.dev/model-card/v1$")
    generated: str
    model: ModelDetails
    data: DataSnapshot
    training: Training
    metrics: list[Metric]
    groups: Groups
    gates: Gates
    attributions: Attributions | None
    """None when the release made none (explain disabled or not run)."""
    text: ModelCardText


@cache
def card_schema() -> dict[str, Any]:
    """The JSON schema of a model card (emitted by `ModelCard`, in serialisation mode)."""
    return ModelCard.model_json_schema(by_alias=True, mode="serialization")


def validate_card(card: dict[str, Any]) -> list[str]:
    """Why `card` is not a valid model card, one line per problem (``jsonschema``); empty when it is."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(card_schema())
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}"
        for e in sorted(validator.iter_errors(card), key=lambda e: list(map(str, e.absolute_path)))
    ]


def attribution_summary(path: Path | None, top: int = 10) -> dict[str, Any] | None:
    """The explain stage's ``attributions.json`` reduced to the card's view; None when there is none."""
    if path is None or not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    share = raw.get("share") or {}
    ranked = sorted((raw.get("global") or {}).items(), key=lambda kv: -abs(float(kv[1])))[:top]
    return {
        "method": str(raw.get("method", "unknown")),
        "why": str(raw.get("why", "")),
        "rows": raw.get("rows"),
        "top": [
            {"feature": str(name), "mean_abs": finite(float(value)), "share": finite(share.get(name))}
            for name, value in ranked
        ],
    }


def build_model_card(
    *,
    model: dict[str, Any],
    data: dict[str, Any],
    training: dict[str, Any],
    metrics: list[dict[str, Any]],
    groups: dict[str, Any],
    gates: dict[str, Any],
    attributions: dict[str, Any] | None,
    text: ModelCardText,
    generated: str,
) -> dict[str, Any]:
    """The card as JSON from the release's evidence and the human text; refused (ValueError) if it is not valid."""
    card = {
        "schema": SCHEMA_VERSION,
        "generated": generated,
        "model": model,
        "data": data,
        "training": {**training, "metrics": {k: finite(v) for k, v in training["metrics"].items()}},
        "metrics": metrics,
        "groups": groups,
        "gates": gates,
        "attributions": attributions,
        "text": text.model_dump(mode="json"),
    }
    problems = validate_card(card)
    if problems:
        raise ValueError(f"the model card does not match its schema: {problems[0]}")
    return card
