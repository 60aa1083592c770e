"""DVC stage `generate_data`: the bundled example's credit-default dataset.

No dataset that a Python package ships offline has both a binary outcome and a sensitive
attribute, which the fairness gate needs, so the example data is generated here, seeded,
and rebuilt by ``dvc repro``. Two populations are written: the current one, which a release
fine-tunes on, and a prior one (shifted income and utilisation), which the base checkpoint
was trained on. Stage `generate_prod_recent` (``--section generate_prod_recent``) writes a
small sample of the current population with another seed: prod's recent labelled data, on
which a promotion into prod re-runs its gates and judges its canary.

The outcome depends on the financial features only; the sensitive attribute ``group`` is
correlated with income, as in real lending data, so a model can still be unfair through it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

FEATURES = [
    "age",
    "income",
    "debt_ratio",
    "credit_utilization",
    "late_payments",
    "years_employed",
    "loan_amount",
]


def generate(rows: int, seed: int, drift: float = 0.0) -> pd.DataFrame:
    """A credit table of `rows` applicants; `drift` shifts the population."""
    rng = np.random.default_rng(seed)
    group = np.where(rng.random(rows) < 0.6, "A", "B")
    age = rng.uniform(21, 70, rows).round()
    income = rng.lognormal(np.log(52.0) - 0.12 * (group == "B") - drift, 0.45, rows).round(1)
    debt_ratio = rng.beta(2, 5, rows).round(3)
    utilization = np.clip(rng.beta(2, 3, rows) + drift / 2, 0, 1).round(3)
    late = rng.poisson(0.6 + drift, rows)
    years_employed = np.minimum(age - 18, rng.gamma(2.0, 3.0, rows)).round(1)
    loan = rng.lognormal(np.log(15.0), 0.6, rows).round(1)
    z = (
        -1.0
        + 2.8 * debt_ratio
        + 2.2 * utilization
        + 0.55 * late
        - 0.025 * (income - 50)
        - 0.06 * years_employed
        + 0.02 * (loan - 15)
        - 0.01 * (age - 45)
    )
    default = (rng.random(rows) < 1 / (1 + np.exp(-2.2 * z))).astype(int)
    return pd.DataFrame(
        {
            "age": age,
            "income": income,
            "debt_ratio": debt_ratio,
            "credit_utilization": utilization,
            "late_payments": late,
            "years_employed": years_employed,
            "loan_amount": loan,
            "group": group,
            "default": default,
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("data/credit.csv"))
    parser.add_argument("--prior-out", type=Path, default=Path("data/credit_prior.csv"))
    parser.add_argument("--section", default="generate_data", help="Section of the params file to read.")
    args = parser.parse_args(argv)
    params = yaml.safe_load(args.params.read_text())[args.section]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    generate(params["rows"], params["seed"]).to_csv(args.out, index=False)
    if "prior_rows" in params:
        prior = generate(params["prior_rows"], params["seed"] + 1, params["prior_drift"])
        prior.to_csv(args.prior_out, index=False)


if __name__ == "__main__":
    main()
