"""Gate `data`: the Great Expectations result of the snapshot and a PII scan of its text columns.

The data validation stage already stops a release whose expectations fail; recording its
result here puts it in the same decision table as the model gates. Personal data in free
text would be learnt and could leak from the model, so text columns (object or string
dtype) are scanned for email addresses, phone numbers and card numbers (a digit run that
passes the Luhn check, so that IDs and amounts are not flagged).
"""

from __future__ import annotations

import re

import pandas as pd

from attestflow.policy import GatePolicy
from attestflow.records import GateDecision
from tasks.gates.decisions import bound, cannot_run, judge
from tasks.gates.evaluation import Evaluation

GATE = "data"
PII_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "phone": re.compile(
        r"(?<![\w.])(?<!\d[\s.-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])"
        r"\d{3,4}[\s.-]\d{3,4}(?!\w|\.\d|[\s.-]\d)"
    ),
    "card": re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)"),
}


def luhn_valid(number: str) -> bool:
    """Whether the digits of `number` pass the Luhn checksum of payment card numbers."""
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cells_with(kind: str, text: pd.Series) -> int:
    if kind != "card":
        return int(text.str.contains(PII_PATTERNS[kind], regex=True).sum())
    found = text.str.findall(PII_PATTERNS["card"])
    return int(found.map(lambda hits: any(luhn_valid(h) for h in hits)).sum())


def find_pii(table: pd.DataFrame, kinds: list[str]) -> dict[str, dict[str, int]]:
    """Column -> PII kind -> number of cells containing it, for the text columns of `table`."""
    found: dict[str, dict[str, int]] = {}
    for column in table.select_dtypes(include=["object", "string"]).columns:
        text = table[column].dropna().astype(str)
        counts = {kind: _cells_with(kind, text) for kind in kinds}
        hits = {kind: n for kind, n in counts.items() if n}
        if hits:
            found[str(column)] = hits
    return found


def expectations_decision(ev: Evaluation, digest: str) -> GateDecision:
    """Passes when the Great Expectations suite passed; names the failing expectations."""
    rule = bound("failed_expectations", 0, "at_most")
    result = ev.data_validation
    if result is None:
        return cannot_run(GATE, rule, "no Great Expectations result was given", digest)
    failed = len(result.failed) or (0 if result.success else 1)
    note = f"suite {result.suite}, {result.evaluated} expectations" + (
        f"; failing: {', '.join(result.failed)}" if result.failed else ""
    )
    return judge(GATE, rule, failed, digest, note=note)


def pii_decision(ev: Evaluation, kinds: list[str], max_cells: int, digest: str) -> GateDecision:
    """Passes when at most `max_cells` text cells contain PII; names the columns and kinds found."""
    found = find_pii(ev.table, kinds)
    cells = sum(n for hits in found.values() for n in hits.values())
    texts = len(ev.table.select_dtypes(include=["object", "string"]).columns)
    note = (
        "; ".join(
            f"column {c!r}: " + ", ".join(f"{n} {k}" for k, n in hits.items()) for c, hits in found.items()
        )
        if found
        else f"{texts} text column(s) scanned for {', '.join(kinds)}"
    )
    return judge(GATE, bound("pii_cells", max_cells, "at_most"), cells, digest, note=note)


def gate(ev: Evaluation, policy: GatePolicy) -> list[GateDecision]:
    """The expectations decision and the PII decision."""
    digest = str(policy.digest())
    rules = policy.data
    return [
        expectations_decision(ev, digest),
        pii_decision(ev, list(rules.pii_kinds), rules.max_pii_cells, digest),
    ]
