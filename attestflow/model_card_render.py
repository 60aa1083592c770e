"""A model card (`attestflow.model_card`) as markdown: for the Prefect run page, MLflow and people.

The markdown is made from the card JSON only, so what a reader sees is what was signed.
"""

from __future__ import annotations

from typing import Any


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _bullets(items: list[str]) -> list[str]:
    return [f"- {i}" for i in items] or ["_Not stated._"]


def _text_sections(text: dict[str, Any]) -> list[str]:
    lines = ["## Intended use", "", text.get("intended_use") or "_Not stated._", ""]
    if text.get("intended_users"):
        lines += ["Intended users:", "", *_bullets(text["intended_users"]), ""]
    lines += ["## Out-of-scope uses", "", *_bullets(text.get("out_of_scope_uses", [])), ""]
    lines += ["## Limitations", "", *_bullets(text.get("limitations", [])), ""]
    ethical = [
        f"**{c['name']}**" + (f": {c['mitigation']}" if c.get("mitigation") else "")
        for c in text.get("ethical_considerations", [])
    ]
    lines += ["## Ethical considerations", "", *_bullets(ethical), ""]
    return lines


def _metrics(card: dict[str, Any]) -> list[str]:
    lines = ["## Held-out metrics", ""]
    if not card["metrics"]:
        return [*lines, "_None measured._", ""]
    first = card["metrics"][0]
    lines += [
        f"ONNX model in ONNX Runtime on {first['rows']} held-out rows; "
        f"{first['confidence']:.0%} percentile bootstrap intervals ({first['resamples']} resamples).",
        "",
        "| metric | value | interval |",
        "|---|---|---|",
    ]
    lines += [
        f"| {m['name']} | {_num(m['value'])} | {_num(m['ci_low'])} – {_num(m['ci_high'])} |"
        for m in card["metrics"]
    ]
    groups = card["groups"]
    lines += ["", f"### Per group of `{groups['attribute']}`", ""]
    if not groups["groups"]:
        return [*lines, "_No sensitive attribute configured._", ""]
    lines += ["| group | rows | accuracy | selection rate |", "|---|---|---|---|"]
    lines += [
        f"| {_cell(g['group'])} | {g['rows']} | {_num(g['accuracy'])} | {_num(g['selection_rate'])} |"
        for g in groups["groups"]
    ]
    return [*lines, ""]


def _gates(gates: dict[str, Any]) -> list[str]:
    verdict = "PASSED" if gates["passed"] else "FAILED"
    lines = [
        "## Gate decisions",
        "",
        f"**{verdict}** under gate policy sha256 `{gates['policy_sha256'][:12]}`.",
        "",
        "| gate | metric | result | value | threshold | reason |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {d['gate']} | {_cell(d['metric'])} | {'pass' if d['passed'] else '**fail**'} | "
        f"{_num(d['value'])} | {_num(d['threshold'])} | {_cell(d['reason'])} |"
        for d in gates["decisions"]
    ]
    return [*lines, ""]


def _attributions(att: dict[str, Any] | None) -> list[str]:
    lines = ["## Attributions", ""]
    if att is None:
        return [*lines, "_This release made no attributions._", ""]
    lines += [f"Method: {att['method']}. {att.get('why', '')}".rstrip(), ""]
    lines += ["| feature | mean abs. attribution | share |", "|---|---|---|"]
    lines += [
        f"| {_cell(a['feature'])} | {_num(a['mean_abs'])} | "
        f"{'n/a' if a['share'] is None else format(a['share'], '.1%')} |"
        for a in att["top"]
    ]
    return [*lines, ""]


def render_markdown(card: dict[str, Any]) -> str:
    """The card as markdown: human sections, then the measured ones, each from the card JSON."""
    model, data, training, text = card["model"], card["data"], card["training"], card["text"]
    lines = [f"# Model card: {model['name']} version {model['version']}", ""]
    if text.get("overview"):
        lines += [text["overview"], ""]
    lines += _text_sections(text)
    lines += [
        "## Model details",
        "",
        f"- URI: `{model['uri']}`; adapter `{model['adapter']}`, architecture {model['architecture']}",
        f"- ONNX (opset {model['opset']}) sha256 `{model['onnx_sha256']}`",
        f"- release bundle sha256 `{model['bundle_sha256']}`, signed with key `{model['signing_key_id']}`",
        "",
        "## Data",
        "",
        f"- snapshot `{data['path']}`, DVC md5 `{data['dvc_md5']}`, manifest sha256 `{data['manifest_sha256']}`",
        f"- {data['rows']} rows, {data['held_out_rows']} held out ({data['test_fraction']:.0%}); "
        f"label `{data['label']}`; sensitive attribute `{data['sensitive']}` (not a model input)",
        f"- features: {', '.join(f'`{f}`' for f in data['features'])}",
        "",
        "## Training",
        "",
        f"- {training['epochs']} epochs on {training['device']} ({training['precision']}), "
        f"from {training['trained_from']} (sha256 `{training['base_checkpoint_sha256'][:12]}`)",
        f"- config sha256 `{training['config_sha256'][:12]}`, MLflow run `{training['mlflow_run_id']}`",
        "",
    ]
    lines += _metrics(card) + _gates(card["gates"]) + _attributions(card["attributions"])
    if text.get("owners"):
        owners = [f"{o['name']}" + (f" ({o['contact']})" if o.get("contact") else "") for o in text["owners"]]
        lines += ["## Owners", "", *_bullets(owners), ""]
    if text.get("references"):
        lines += ["## References", "", *_bullets(text["references"]), ""]
    lines += [f"_Generated {card['generated']} from the release's signed evidence ({card['schema']})._", ""]
    return "\n".join(lines)
