"""Gate `attribution`: what the model's decisions rest on, from its attributions (`attestflow.explain`).

Three decisions. The share of the total attribution carried by the sensitive attribute (when
it is a model input) and by its proxies: features strongly associated with it in the data,
measured by the correlation ratio eta (the share of a feature's spread explained by the
groups, square-rooted; for two groups it is the absolute point-biserial correlation), which
needs no assumption about the number of groups; a feature at or above ``proxy_threshold``
is a proxy, and the reason names every one with its eta. The total attribution, which is
near zero for a model that ignores its input: such a model does not pass as explained.
And, where the champion's verified bundle carries attributions and the policy sets
``min_rank_stability``, the Spearman rank correlation of the two global attributions over
the features of either (absent ones count as zero): a release whose reasons changed
order is not the same model with new weights. No champion, or none with attributions,
passes with a decision saying so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from attestflow.explain import Attributions, read_attributions
from attestflow.policy import AttributionPolicy, GatePolicy
from attestflow.records import GateDecision
from tasks.gates.decisions import bound, cannot_run, judge
from tasks.gates.evaluation import Baseline, Evaluation

GATE = "attribution"


def correlation_ratio(values: np.ndarray, groups: np.ndarray) -> float:
    """Eta: sqrt(between-group sum of squares / total sum of squares) of `values` over `groups` (NaNs dropped)."""
    present = ~np.isnan(values)
    x, g = values[present], groups[present]
    total = float(((x - x.mean()) ** 2).sum()) if len(x) else 0.0
    if total == 0:
        return 0.0
    between = sum(float((g == k).sum() * (x[g == k].mean() - x.mean()) ** 2) for k in np.unique(g))
    return math.sqrt(between / total)


def proxies(table: pd.DataFrame, sensitive: str, features: list[str]) -> dict[str, float]:
    """Each numeric column among `features` with its eta against `sensitive`, largest first."""
    groups = table[sensitive].astype(str).to_numpy()
    etas = {
        f: correlation_ratio(table[f].to_numpy(dtype=float), groups)
        for f in features
        if f != sensitive and f in table.columns and pd.api.types.is_numeric_dtype(table[f])
    }
    return dict(sorted(etas.items(), key=lambda kv: -kv[1]))


def sensitive_decision(
    ev: Evaluation, att: Attributions, rules: AttributionPolicy, digest: str
) -> GateDecision:
    """The share of attribution carried by the sensitive attribute and its proxies, naming them."""
    rule = bound("sensitive_attribution_share", rules.max_sensitive_share, "at_most")
    name = ev.data.sensitive
    if name is None or name not in ev.table.columns:
        why = (
            "no sensitive attribute is configured (data.sensitive)"
            if name is None
            else f"{name!r} is not in the data"
        )
        return cannot_run(GATE, rule, why, digest)
    features = list(att["features"])
    etas = proxies(ev.table, name, features)
    found = [f for f, eta in etas.items() if eta >= rules.proxy_threshold]
    carried = ([name] if name in features else []) + found
    share = sum(float(att["share"].get(f, 0.0)) for f in carried)
    said = [f"{name} itself"] if name in features else []
    said += [f"proxy {f} (eta {etas[f]:.2f})" for f in found]
    if said:
        note = f"carried by {', '.join(said)}"
    elif etas:
        strongest = next(iter(etas))
        note = (
            f"no feature is {name} or a proxy of it; the most associated, {strongest}, "
            f"has eta {etas[strongest]:.2f} < {rules.proxy_threshold:g}"
        )
    else:
        note = (
            f"no attributed feature is a numeric column of the data (tokens?), so none is a proxy of {name}"
        )
    return judge(GATE, rule, share, digest, note=note)


def total_decision(att: Attributions, rules: AttributionPolicy, digest: str) -> GateDecision:
    """The total attribution: a model that ignores its input has none."""
    rule = bound("total_attribution", rules.min_total, "at_least")
    note = "the model's output hardly depends on its input" if not rule.passes(att["total"]) else ""
    return judge(GATE, rule, float(att["total"]), digest, note=note)


def rank_stability(candidate: dict[str, float], champion: dict[str, float]) -> float:
    """Spearman rank correlation of two global attributions over the union of their features (absent: 0)."""
    from scipy.stats import spearmanr

    names = sorted(set(candidate) | set(champion))
    a = [float(candidate.get(n, 0.0)) for n in names]
    b = [float(champion.get(n, 0.0)) for n in names]
    if len(names) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return math.nan
    return float(spearmanr(a, b).statistic)


def stability_decision(
    att: Attributions, base: Baseline | None, threshold: float, digest: str
) -> GateDecision:
    """The candidate's global ranking against the champion's; passes, saying so, when there is none to compare."""
    rule = bound("attribution_rank_stability", threshold, "at_least")
    theirs = base.attributions if base is not None else None
    if base is None or base.uri is None or theirs is None:
        if base is None or base.uri is None:
            why = "no champion to compare with"
        elif base.problem and base.logits is None:
            why = f"the champion {base.uri} could not be read ({base.problem})"
        else:
            why = f"the champion {base.uri} has no attributions"
        return GateDecision(
            GATE, rule.metric, math.nan, threshold, math.nan, True, f"{why}: not compared", digest
        )
    value = rank_stability(att["global"], theirs.get("global", {}))
    return judge(GATE, rule, value, digest, note=f"Spearman vs {base.uri}")


def gate(ev: Evaluation, policy: GatePolicy) -> list[GateDecision]:
    """The sensitive share, the total and (when set) the rank stability against the champion."""
    rules = policy.attribution
    if rules is None:
        return []
    digest = str(policy.digest())
    att = read_attributions(ev.attributions)
    if att is None or att.get("method") == "none":
        why = "no attributions of this model were given (explain stage off?)" if att is None else att["why"]
        rules_checked = [
            bound("sensitive_attribution_share", rules.max_sensitive_share, "at_most"),
            bound("total_attribution", rules.min_total, "at_least"),
        ]
        return [cannot_run(GATE, r, why, digest) for r in rules_checked]
    decisions = [sensitive_decision(ev, att, rules, digest), total_decision(att, rules, digest)]
    if rules.min_rank_stability is not None:
        decisions.append(stability_decision(att, ev.baseline, rules.min_rank_stability, digest))
    return decisions
