"""Gate `data`: the Great Expectations result and a PII scan of the text columns."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from attestflow.records import DataValidationRecord
from tasks.gates import data
from tests.code.planted import Lab, bundled_policy


def test_clean_data_with_a_passed_suite_passes(lab: Lab) -> None:
    expectations, pii = data.gate(lab.evaluate(lab.good_onnx), bundled_policy())
    assert expectations.passed and "23 expectations" in expectations.reason
    assert pii.passed and "1 text column(s) scanned" in pii.reason


def test_a_text_column_with_emails_is_refused_and_named(lab: Lab) -> None:
    notes = [f"contact {i}@example.com" if i % 50 == 0 else "called back" for i in range(len(lab.table))]
    ev = replace(lab.evaluate(lab.good_onnx), table=lab.table.assign(note=notes))
    pii = data.gate(ev, bundled_policy())[1]
    assert not pii.passed
    assert pii.value == 60
    assert "column 'note': 60 email" in pii.reason


def test_a_failed_or_missing_suite_result_fails(lab: Lab) -> None:
    failed = DataValidationRecord("credit", False, 23, ["expect_column_values_to_be_between(age)"], lab.root)
    ev = lab.evaluate(lab.good_onnx, data_validation=failed)
    decision = data.expectations_decision(ev, "sha256:x")
    assert not decision.passed and "expect_column_values_to_be_between(age)" in decision.reason
    missing = data.expectations_decision(lab.evaluate(lab.good_onnx, data_validation=None), "sha256:x")
    assert not missing.passed and "no Great Expectations result" in missing.reason


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("write to jane.doe+loans@bank.co.uk", {"email"}),
        ("call +44 20 7946 0958 after six", {"phone"}),
        ("call (555) 123-4567", {"phone"}),
        ("card 4111 1111 1111 1111 on file", {"card"}),
        ("card 4111-1111-1111-1112 on file", set()),
        ("loan 15000.50 over 36 months, id 20240117", set()),
        ("A", set()),
    ],
)
def test_pii_patterns_find_what_they_should_and_nothing_else(text: str, kinds: set[str]) -> None:
    found = data.find_pii(pd.DataFrame({"t": [text], "n": [1.0]}), ["email", "phone", "card"])
    assert set(found.get("t", {})) == kinds
