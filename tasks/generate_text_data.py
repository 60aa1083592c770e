"""DVC stage `generate_text_data`: the text example's product reviews with a sentiment label.

No labelled text dataset with a clear licence is shipped offline by an installed package
(scikit-learn's text sets download at run time, as do NLTK's corpora and the dataset hubs),
so the reviews are generated here, seeded, and rebuilt by ``dvc repro``.

Each review is one to three short sentences about a product: an optional neutral opener,
aspect clauses, negations ("not bad at all", "not worth the price"), contrast ("..., but
...", where the clause after "but" carries the label) and some genuinely lukewarm reviews
whose label is a coin flip. A share of labels is flipped at random, so no model reaches
100%. ``label`` is 1 for a positive review. ``group`` is the reviewer's region, the sensitive
attribute for the fairness gate: regions differ a little in positive rate and in wording
(British spelling, different intensifiers), as real reviewer populations do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

PRODUCTS = {
    "electronics": [
        "headphones",
        "charger",
        "phone case",
        "keyboard",
        "speaker",
        "webcam",
        "mouse",
        "tablet",
    ],
    "kitchen": ["kettle", "blender", "frying pan", "coffee grinder", "toaster", "knife set", "rice cooker"],
    "home": ["lamp", "vacuum", "pillow", "curtains", "desk chair", "bookshelf", "rug"],
    "outdoor": ["tent", "backpack", "water bottle", "hiking boots", "rain jacket", "camping stove"],
}
ASPECTS = {
    "electronics": ["battery life", "sound", "connection", "build quality", "screen", "buttons"],
    "kitchen": ["handle", "motor", "lid", "heating", "blade", "cleaning"],
    "home": ["colour", "material", "assembly", "size", "stitching", "finish"],
    "outdoor": ["zipper", "straps", "weight", "waterproofing", "seams", "grip"],
}
POS_ADJ = [
    "excellent",
    "great",
    "solid",
    "reliable",
    "sturdy",
    "fantastic",
    "impressive",
    "comfortable",
    "perfect",
]
NEG_ADJ = ["terrible", "flimsy", "awful", "disappointing", "cheap", "useless", "poor", "unreliable", "broken"]
POS_VERB = [
    "works perfectly",
    "does exactly what it says",
    "exceeded my expectations",
    "has held up really well",
    "was worth every penny",
    "arrived quickly and works fine",
]
NEG_VERB = [
    "stopped working after a week",
    "broke the first time I used it",
    "feels like it will fall apart",
    "was a waste of money",
    "never worked properly",
    "had to go back to the seller",
]
POS_CLOSE = [
    "Highly recommend.",
    "Would buy again.",
    "Five stars from me.",
    "Very happy with it.",
    "Love it.",
]
NEG_CLOSE = ["Avoid.", "Would not buy again.", "Returning it.", "Very disappointed.", "Not recommended."]
LUKEWARM = [
    "It's okay, nothing special.",
    "Does the job I suppose.",
    "Average {product}, average price.",
    "Hard to say yet, only used it twice.",
    "It is fine for what it is.",
]
OPENERS = [
    "Bought the {product} for my {who}.",
    "Ordered the {product} last {when}.",
    "I have had the {product} for a {when} now.",
    "Got the {product} as a gift.",
    "Replaced my old {product} with this one.",
]
WHO = ["sister", "dad", "flat", "office", "kids", "partner", "mum"]
WHEN = ["week", "month", "year", "weekend"]
REGIONS = {
    # region: (share of reviewers, positive rate, intensifiers, "colour" spelled)
    "north": (0.45, 0.58, ["really", "very", "super"], "color"),
    "south": (0.35, 0.52, ["really", "quite", "pretty"], "color"),
    "islands": (0.20, 0.47, ["rather", "quite", "properly"], "colour"),
}


def _plural(noun: str) -> bool:
    return noun.endswith("s") and not noun.endswith("ss")


def _clause(rng: np.random.Generator, positive: bool, category: str, product: str, intens: list[str]) -> str:
    """One sentence that says how good or bad the product or one of its aspects is."""
    aspect = str(rng.choice(ASPECTS[category]))
    adv = str(rng.choice(intens))
    be = "are" if _plural(aspect) else "is"
    this = "These" if _plural(product) else "This"
    kind = rng.integers(0, 5)
    if kind == 0:
        adj = rng.choice(POS_ADJ if positive else NEG_ADJ)
        return f"The {aspect} {be} {adv} {adj}."
    if kind == 1:  # negation of the opposite word
        adj = rng.choice(NEG_ADJ if positive else POS_ADJ)
        return f"The {aspect} {be} not {adj} at all." if positive else f"The {aspect} {be} not {adj}, sadly."
    if kind == 2:
        verb = rng.choice(POS_VERB if positive else NEG_VERB)
        return f"{this} {product} {verb}."
    if kind == 3:
        return (
            f"No complaints about the {aspect}."
            if positive
            else f"Cannot recommend it, the {aspect} {be} {adv} bad."
        )
    adj = rng.choice(POS_ADJ if positive else NEG_ADJ)
    return f"{str(adj).capitalize()} {product}, {adv} {'pleased' if positive else 'annoyed'}."


def review(rng: np.random.Generator, positive: bool, region: str) -> tuple[str, bool]:
    """A review text and its label (lukewarm reviews get a random label)."""
    _, _, intens, colour = REGIONS[region]
    category = str(rng.choice(list(PRODUCTS)))
    product = str(rng.choice(PRODUCTS[category]))
    parts: list[str] = []
    if rng.random() < 0.45:
        parts.append(
            str(rng.choice(OPENERS)).format(product=product, who=rng.choice(WHO), when=rng.choice(WHEN))
        )
    if rng.random() < 0.08:
        parts.append(str(rng.choice(LUKEWARM)).format(product=product))
        positive = bool(rng.random() < 0.5)
    elif rng.random() < 0.25:  # contrast: the clause after "but" decides
        first = _clause(rng, not positive, category, product, intens).rstrip(".")
        second = _clause(rng, positive, category, product, intens)
        parts.append(f"{first}, but {second[0].lower()}{second[1:]}")
    else:
        parts.append(_clause(rng, positive, category, product, intens))
        if rng.random() < 0.5:
            parts.append(_clause(rng, positive, category, product, intens))
    if rng.random() < 0.4:
        parts.append(str(rng.choice(POS_CLOSE if positive else NEG_CLOSE)))
    text = " ".join(parts).replace("colour", colour)
    return text, positive


def generate(rows: int, seed: int, label_noise: float) -> pd.DataFrame:
    """`rows` reviews with columns ``text``, ``group`` (region) and ``label`` (1 = positive)."""
    rng = np.random.default_rng(seed)
    names = list(REGIONS)
    shares = np.array([REGIONS[r][0] for r in names])
    regions = rng.choice(names, size=rows, p=shares / shares.sum())
    texts, labels = [], []
    for region in regions:
        text, positive = review(rng, bool(rng.random() < REGIONS[str(region)][1]), str(region))
        if rng.random() < label_noise:
            positive = not positive
        texts.append(text)
        labels.append(int(positive))
    return pd.DataFrame({"text": texts, "group": regions, "label": labels})


def main(argv: list[str] | None = None) -> None:
    """Write the reviews CSV with the parameters of ``params.yaml``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("data/reviews.csv"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    p = yaml.safe_load(args.params.read_text())["generate_text_data"]
    df = generate(int(p["rows"]), int(p["seed"]), float(p["label_noise"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    print(f"wrote {len(df)} reviews to {args.out} (positive rate {df['label'].mean():.2f})")


if __name__ == "__main__":
    main()
