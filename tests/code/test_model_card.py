"""The model card: strict human text, a JSON schema every card is validated against, and its markdown."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attestflow.digests import Digest
from attestflow.errors import ConfigError
from attestflow.evidence import CARD_MD, MODEL_CARD, attachment, kind_of, model_card_statement
from attestflow.model_card import (
    SECTIONS,
    ModelCardText,
    attribution_summary,
    build_model_card,
    card_schema,
    card_text,
    load_model_card_text,
    validate_card,
)
from attestflow.model_card_render import render_markdown
from tasks.gates.regression import bootstrap_interval
from tasks.model_card import description

ROOT = Path(__file__).resolve().parents[2]
H = "ab" * 32


def _card(**changes: Any) -> dict[str, Any]:
    parts: dict[str, Any] = {
        "model": {
            "name": "credit-default",
            "version": "3",
            "uri": "models:/credit-default/3",
            "adapter": "tabular",
            "architecture": "multilayer perceptron",
            "onnx_sha256": H,
            "bundle_sha256": H,
            "signing_key_id": "sha256:" + H,
            "opset": 18,
        },
        "data": {
            "path": "data/credit.csv",
            "dvc_md5": "ef" * 16,
            "manifest_sha256": H,
            "rows": 4165,
            "held_out_rows": 833,
            "features": ["age", "income"],
            "label": "default",
            "sensitive": "group",
            "test_fraction": 0.2,
        },
        "training": {
            "config_sha256": H,
            "mlflow_run_id": "run1",
            "epochs": 6,
            "device": "cpu",
            "precision": "fp32",
            "trained_from": "base_checkpoint",
            "base_checkpoint_sha256": H,
            "metrics": {"val_loss": 0.4, "nan": float("nan")},
        },
        "metrics": [
            {
                "name": "accuracy",
                "value": 0.83,
                "ci_low": 0.8,
                "ci_high": 0.86,
                "confidence": 0.95,
                "resamples": 1000,
                "rows": 833,
            }
        ],
        "groups": {
            "attribute": "group",
            "groups": [{"group": "a", "rows": 400, "accuracy": 0.84, "selection_rate": 0.7}],
        },
        "gates": {
            "passed": True,
            "policy_sha256": H,
            "decisions": [
                {
                    "gate": "performance",
                    "metric": "accuracy",
                    "passed": True,
                    "value": 0.83,
                    "threshold": 0.8,
                    "reason": "ok",
                }
            ],
        },
        "attributions": None,
        "text": load_model_card_text(ROOT / "configs/model_card.yaml"),
        "generated": "2025-01-01T00:00:00.000000Z",
    }
    parts.update(changes)
    return build_model_card(**parts)


def test_the_shipped_card_text_fills_every_section() -> None:
    text = load_model_card_text(ROOT / "configs/model_card.yaml")
    assert text.missing(list(SECTIONS)) == []
    assert "synthetic" in text.intended_use + " ".join(text.limitations)


def test_missing_names_empty_absent_and_unknown_sections() -> None:
    text = ModelCardText(intended_use="  ", limitations=["x"])
    assert text.missing(["intended_use", "limitations", "out_of_scope_uses", "no_such_section"]) == [
        "intended_use",
        "out_of_scope_uses",
        "no_such_section",
    ]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("intended_use: x\nsurprise: 1\n", "surprise"),
        ("limitations: just a string\n", "limitations"),
        ("- a list\n", "expected a mapping"),
        ("intended_use: [unclosed\n", "model_card.yaml"),
    ],
)
def test_a_malformed_card_text_is_one_config_error_line(tmp_path: Path, body: str, said: str) -> None:
    path = tmp_path / "model_card.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as e:
        load_model_card_text(path)
    assert said in str(e.value) and "\n" not in str(e.value)


def test_an_absent_card_text_is_empty_so_every_section_is_missing(tmp_path: Path) -> None:
    assert card_text(tmp_path / "none.yaml").missing(list(SECTIONS)) == list(SECTIONS)


def test_a_built_card_validates_and_non_finite_numbers_become_null() -> None:
    card = _card()
    assert validate_card(card) == []
    assert card["training"]["metrics"]["nan"] is None
    assert card_schema()["additionalProperties"] is False
    json.dumps(card, allow_nan=False)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["model"].update(onnx_sha256="not-a-digest"),
        lambda c: c.pop("gates"),
        lambda c: c["metrics"][0].update(confidence=1.5),
        lambda c: c.update(extra="field"),
        lambda c: c["text"].update(limitations="a string, not a list"),
        lambda c: c.update(schema="https://example.com/other"),
    ],
)
def test_a_malformed_model_card_fails_schema_validation(breakage: Any) -> None:
    card = copy.deepcopy(_card())
    breakage(card)
    assert validate_card(card)


def test_building_refuses_a_card_that_does_not_match_its_schema() -> None:
    with pytest.raises(ValueError, match="does not match its schema"):
        _card(metrics=[{"name": "accuracy"}])


def test_attributions_are_summarised_and_their_absence_is_said(tmp_path: Path) -> None:
    assert attribution_summary(tmp_path / "absent.json") is None
    path = tmp_path / "attributions.json"
    path.write_text(
        json.dumps(
            {
                "method": "ig",
                "why": "w",
                "global": {"a": 0.1, "b": -0.5},
                "share": {"a": 0.2, "b": 0.8},
                "rows": 9,
            }
        )
    )
    summary = attribution_summary(path)
    assert summary is not None and [t["feature"] for t in summary["top"]] == ["b", "a"]
    markdown = render_markdown(_card(attributions=summary))
    assert "| b | -0.5 | 80.0% |" in markdown
    assert "This release made no attributions" in render_markdown(_card())


def test_the_markdown_shows_human_and_measured_sections() -> None:
    markdown = render_markdown(_card())
    for heading in (
        "Intended use",
        "Out-of-scope uses",
        "Limitations",
        "Ethical considerations",
        "Gate decisions",
    ):
        assert f"## {heading}" in markdown
    assert "| accuracy | 0.83 | 0.8 – 0.86 |" in markdown
    assert "| a | 400 | 0.84 | 0.7 |" in markdown


def test_a_long_card_is_cut_at_a_line_for_the_version_description() -> None:
    text = "\n".join(f"line {i}" for i in range(2000))
    cut = description(text, 500)
    assert len(cut) <= 500 and "whole card is in the version's evidence" in cut
    assert description("short") == "short"


def test_the_card_statement_names_its_markdown_and_is_not_a_verdict(tmp_path: Path) -> None:
    markdown = tmp_path / "card.md"
    markdown.write_text(render_markdown(_card()))
    stmt = model_card_statement(_card(), markdown, Digest("sha256", H, "model.onnx"))
    assert stmt["predicateType"] == MODEL_CARD and kind_of(stmt) == "model_card"
    assert stmt["subject"] == [{"name": "model.onnx", "digest": {"sha256": H}}]
    named = attachment(stmt)
    assert named is not None and named.startswith("evidence/model_card-") and named.endswith(CARD_MD)


def test_a_metric_interval_contains_its_value_and_narrows_with_more_rows() -> None:
    rng = np.random.default_rng(0)

    def width(n: int) -> float:
        y = rng.integers(0, 2, n)
        logits = np.stack([np.zeros(n), np.where(rng.random(n) < 0.8, y, 1 - y) * 2.0 - 1], axis=1)
        value, lo, hi = bootstrap_interval("accuracy", y, logits, confidence=0.95, resamples=500, seed=0)
        assert lo <= value <= hi
        return hi - lo

    assert width(4000) < width(200)
