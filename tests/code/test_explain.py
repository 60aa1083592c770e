"""The explain stage's attributions and the attribution gate, each seen saying no."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from attestflow.config import DataConfig, ExplainConfig
from attestflow.dataset import Split, split_table
from attestflow.explain import Attributions, explain_model, read_attributions, tabular_attributions
from attestflow.explain_view import attributions_markdown
from attestflow.policy import GatePolicy
from attestflow.records import GateDecision, write_json
from attestflow.tabular import TabularMLP
from tasks.explain import explain
from tasks.gates import attribution
from tasks.gates.evaluation import Baseline, evaluation
from tests.code.planted import TABULAR, Lab, bundled_policy, export, ignoring_input

CONFIG = ExplainConfig(rows=200, examples=3, seed=1)


def _policy() -> GatePolicy:
    return bundled_policy()


def _explained(lab: Lab, checkpoint: Path, folder: Path, data: DataConfig | None = None) -> Path:
    data = data or lab.data
    _, held_out = split_table(pd.read_csv(data.path), data, TABULAR)
    return write_json(
        folder / "attributions.json", explain_model(TABULAR, checkpoint, held_out, data, CONFIG)
    )


def _by_metric(decisions: list[GateDecision]) -> dict[str, GateDecision]:
    return {d.metric: d for d in decisions}


def test_attributions_of_a_row_sum_to_the_change_of_the_explained_output(lab: Lab) -> None:
    x = lab.held_out.x[:50]
    attr, pred, base, delta = tabular_attributions(lab.good.eval(), x)
    with torch.no_grad():
        logits = lab.good(torch.from_numpy(x)).numpy()
        at_base = lab.good(torch.from_numpy(np.tile(base, (len(x), 1)))).numpy()
    centred = logits - logits.mean(axis=1, keepdims=True)
    centred_base = at_base - at_base.mean(axis=1, keepdims=True)
    rows = np.arange(len(x))
    expected = centred[rows, pred] - centred_base[rows, pred]
    np.testing.assert_allclose(attr.sum(axis=1), expected, atol=0.05)
    assert delta.max() < 0.05 and np.abs(attr).sum() > 1


def test_the_stage_writes_the_contract_and_the_good_model_passes(lab: Lab, tmp_path: Path) -> None:
    record = explain(CONFIG, lab.data, lab.good_checkpoint, tmp_path)
    att = json.loads(record.path.read_text())
    keys = {"method", "why", "target", "features", "global", "share", "total", "examples", "rows", "seed"}
    assert keys <= set(att) and att["features"] == lab.data.features
    assert att["rows"] == 200 and att["seed"] == 1 and len(att["examples"]) == 3
    assert sum(att["share"].values()) == pytest.approx(1.0)
    assert att["total"] == pytest.approx(sum(att["global"].values()))
    assert record.top[0] in lab.data.features and record.digest.value
    assert {ex["prediction"] for ex in att["examples"]} <= {0, 1}

    decisions = attribution.gate(lab.evaluate(lab.good_onnx, attributions=record.path), _policy())
    assert all(d.passed for d in decisions), [d.reason for d in decisions]
    said = _by_metric(decisions)
    assert "no feature is group or a proxy of it" in said["sensitive_attribution_share"].reason
    assert "no champion to compare with" in said["attribution_rank_stability"].reason

    markdown, description = attributions_markdown("credit", att)
    assert description.startswith("![global attributions of credit](data:image/svg+xml;base64,")
    assert "| held-out row | prediction | strongest attributions |" in markdown


def _proxy_lab(lab: Lab, root: Path) -> tuple[DataConfig, Path, Path]:
    """The lab's data with ``district``, a near-copy of group, and a model that decides by it alone."""
    rng = np.random.default_rng(0)
    table = lab.table.copy()
    table["district"] = (table["group"] == "B").astype(float) + rng.normal(0, 0.05, len(table))
    table["default"] = (table["district"] > 0.5).astype(int)
    path = root / "credit-district.csv"
    root.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    data = lab.data.model_copy(update={"path": path, "features": [*lab.data.features, "district"]})
    model = TabularMLP(len(data.features), (2,), 2)
    train, _ = split_table(table, data, TABULAR)
    TABULAR.prepare(model, train.inputs)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        first, last = model.net[0], model.net[-1]
        assert isinstance(first, torch.nn.Linear) and isinstance(last, torch.nn.Linear)
        first.weight[:, -1] = torch.tensor([1.0, -1.0])
        last.weight.copy_(torch.tensor([[-1.0, 1.0], [1.0, -1.0]]))
    onnx_path, checkpoint = export(model.eval(), root / "proxy", data)
    return data, onnx_path, checkpoint


def test_a_model_deciding_by_a_proxy_of_the_sensitive_attribute_fails_naming_it(
    lab: Lab, tmp_path: Path
) -> None:
    data, onnx_path, checkpoint = _proxy_lab(lab, tmp_path)
    table = pd.read_csv(data.path)
    _, held_out = split_table(table, data, TABULAR)
    found = _explained(lab, checkpoint, tmp_path, data)
    ev = evaluation(onnx_path, data, table, held_out, TABULAR, attributions=found)
    said = _by_metric(attribution.gate(ev, _policy()))
    share = said["sensitive_attribution_share"]
    assert not share.passed and share.value > 0.99
    assert "proxy district (eta 0.99)" in share.reason and "above the maximum 0.2" in share.reason
    assert said["total_attribution"].passed, "it does depend on its input"


def test_a_model_that_ignores_its_input_does_not_pass_as_explained(lab: Lab, tmp_path: Path) -> None:
    onnx_path, checkpoint = export(ignoring_input(lab.good), tmp_path / "constant", lab.data)
    found = _explained(lab, checkpoint, tmp_path)
    total = _by_metric(attribution.gate(lab.evaluate(onnx_path, attributions=found), _policy()))[
        "total_attribution"
    ]
    assert not total.passed and total.value == 0.0
    assert "hardly depends on its input" in total.reason


def test_without_attributions_the_gate_cannot_pass(lab: Lab) -> None:
    decisions = attribution.gate(lab.evaluate(lab.good_onnx), _policy())
    assert decisions and not any(d.passed for d in decisions)
    assert "no attributions of this model were given" in decisions[0].reason


def _champion(att: Attributions | None) -> Baseline:
    return Baseline("champion", "models:/credit/1", logits=np.zeros((1, 2)), attributions=att)


def test_a_ranking_reversed_against_the_champions_fails_stability(lab: Lab, tmp_path: Path) -> None:
    found = _explained(lab, lab.good_checkpoint, tmp_path)
    att = read_attributions(found)
    assert att is not None
    ranked = sorted(att["global"], key=lambda f: att["global"][f])
    reversed_global = {f: float(i) for i, f in enumerate(ranked[::-1])}
    same = _by_metric(
        attribution.gate(lab.evaluate(lab.good_onnx, attributions=found, baseline=_champion(att)), _policy())
    )["attribution_rank_stability"]
    assert same.passed and same.value == pytest.approx(1.0) and "Spearman vs models:/credit/1" in same.reason
    flipped = _champion({**att, "global": reversed_global})
    stability = _by_metric(
        attribution.gate(lab.evaluate(lab.good_onnx, attributions=found, baseline=flipped), _policy())
    )["attribution_rank_stability"]
    assert not stability.passed and stability.value == pytest.approx(-1.0)
    no_file = _by_metric(
        attribution.gate(lab.evaluate(lab.good_onnx, attributions=found, baseline=_champion(None)), _policy())
    )["attribution_rank_stability"]
    assert no_file.passed and "has no attributions" in no_file.reason


def test_text_attributions_are_over_word_pieces(tmp_path: Path) -> None:
    from attestflow.adapters import load_adapter
    from attestflow.config import ModelConfig
    from tasks.generate_text_data import generate
    from tests.code.tiny_bert import tiny_bert

    tiny_bert(tmp_path)
    a = load_adapter(ModelConfig(adapter="text_classifier", options={"max_length": 32}))
    model = a.load_base(tmp_path, a.weights_file(tmp_path), n_classes=2)
    checkpoint = tmp_path / "text.safetensors"
    a.save(model, checkpoint, {})
    reviews = generate(40, seed=3, label_noise=0.0)
    data = DataConfig(
        path=tmp_path / "r.csv", label="label", features=["text"], sensitive="group", classes=[0, 1]
    )
    held_out = Split(a.encode(reviews, data), reviews["label"].to_numpy(), None)
    att = explain_model(a, checkpoint, held_out, data, ExplainConfig(rows=20, examples=2))
    assert att["method"] == "layer_integrated_gradients" and att["rows"] == 20 and att["total"] > 0
    assert not {"[CLS]", "[SEP]", "[PAD]"} & set(att["features"])
    assert len(att["examples"]) == 2 and att["examples"][0]["tokens"]
    assert sum(att["share"].values()) <= 1.0 + 1e-9
