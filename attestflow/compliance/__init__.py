"""Compliance reports and the risk tier: a framework's controls mapped to the evidence a release leaves.

`mapping` reads a framework's controls strictly from ``configs/compliance/``; `gather` verifies
a model version as `attestflow verify` does and reads what its verified folder holds; `assess`
judges each control verified, declared or missing; `render` writes Markdown, JSON or HTML;
`tier` refuses, before training, a release whose risk tier requires a control its config
cannot meet. `compliance_report` is what `attestflow report` runs.
"""
