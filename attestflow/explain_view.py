"""The attributions as people read them: a bar chart and a table, for the Prefect run page.

The global attributions are a horizontal bar chart (SVG drawn by `attestflow.plot`, inlined
as a ``data:`` image in the artifact's description, which the run page's artifact card
renders, as the training curves are); the sampled rows' strongest features are a table below.
"""

from __future__ import annotations

from attestflow.explain import Attributions
from attestflow.plot import bar_chart_svg
from attestflow.progress import image_markdown

MAX_BARS = 20
TOP_PER_ROW = 3


def _fmt(v: float) -> str:
    return f"{v:+.3g}"


def attributions_markdown(model_name: str, att: Attributions) -> tuple[str, str]:
    """The artifact's (markdown, description): the chart leads the description, the examples' table the body."""
    ranked = sorted(att["global"].items(), key=lambda kv: -kv[1])
    lead = f"{model_name}: {att['method']} over {att['rows']} held-out rows, total {att['total']:.4g}"
    if not ranked:
        return f"# Attributions of {model_name}\n\n{att['why']}\n", f"{lead}: {att['why']}"
    svg = bar_chart_svg(
        f"{model_name}: mean |attribution| per feature",
        ranked[:MAX_BARS],
        f"mean |attribution| ({att['target']})",
    )
    plot = image_markdown(svg, f"global attributions of {model_name}")
    rows = []
    for ex in att["examples"]:
        strongest = sorted(ex["attributions"].items(), key=lambda kv: -abs(kv[1]))[:TOP_PER_ROW]
        said = ", ".join(f"{name} {_fmt(v)}" for name, v in strongest)
        rows.append(f"| {ex['row']} | {ex['prediction']} | {said} |")
    shares = ", ".join(f"{name} {att['share'][name]:.0%}" for name, _ in ranked[:5])
    table = "| held-out row | prediction | strongest attributions |\n|---|---|---|\n" + "\n".join(rows)
    markdown = (
        f"# Attributions of {model_name}\n\nMethod: {att['method']} ({att['why']}); explained output: "
        f"{att['target']}.\n\nShare of the total attribution: {shares}.\n\n"
        f"Sampled rows (seed {att['seed']}):\n\n{table}\n"
    )
    return markdown, f"{plot}\n\n{lead}"
