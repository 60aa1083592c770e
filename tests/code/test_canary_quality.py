"""The labelled canary: on recent labelled rows, a significantly worse new champion is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from attestflow.config import CanaryConfig
from attestflow.errors import BadInputError, GateFailedError
from attestflow.outcomes import CanaryRecord, PromotionRecord
from attestflow.preflight import check_canary_labels
from attestflow.verify import Check, Verification
from tasks import canary as canary_module
from tests.code.planted import Lab, export, ignoring_input

MODEL = "credit-prod"


def _serve(monkeypatch: pytest.MonkeyPatch, folders: dict[str, Path]) -> None:
    """Versions of `MODEL` served from local folders, as verified (the registry is tested elsewhere)."""

    def verified(
        uri: str, tracking_uri: str, public_key: Path, *, use: Callable[[Path], object], **_: object
    ) -> Verification:
        use(folders[uri.rsplit("/", 1)[1]])
        return Verification(uri, [Check("bundle", True, "planted")])

    monkeypatch.setattr(canary_module, "verify_model_uri", verified)


def _canary(lab: Lab, sample: Path, **cfg: object) -> CanaryRecord:
    data = lab.data.model_copy(update={"classes": [0, 1]})
    promotion = PromotionRecord(model_name=MODEL, alias="champion", version="2", previous_version="1")
    return canary_module.canary(
        CanaryConfig(sample=sample, quality=True, max_disagreement=1.0, max_latency_ratio=100, **cfg),
        promotion,
        data=data,
        tracking_uri="unused",
        public_key=Path("unused"),
    )


def test_a_planted_worse_model_fails_the_labelled_canary_with_its_reason(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    worse, _ = export(ignoring_input(lab.good), tmp_path / "worse", lab.data)
    _serve(monkeypatch, {"1": lab.good_onnx.parent, "2": worse.parent})
    sample = tmp_path / "recent.csv"
    lab.table.tail(600).to_csv(sample, index=False)
    with pytest.raises(GateFailedError) as refused:
        _canary(lab, sample)
    reason = refused.value.reasons[0]
    assert "quality on labelled rows: roc_auc vs models:/credit-prod/1" in reason
    assert "even the upper bound is a drop" in reason


def test_an_equally_good_model_passes_and_the_record_says_what_quality_showed(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _serve(monkeypatch, {"1": lab.good_onnx.parent, "2": lab.good_onnx.parent})
    sample = tmp_path / "recent.csv"
    lab.table.tail(600).to_csv(sample, index=False)
    record = _canary(lab, sample)
    assert record.passed
    assert [q.split(" vs ")[0] for q in record.quality] == ["roc_auc", "accuracy"]
    assert "quality: roc_auc" in record.reason


def test_quality_with_a_sample_lacking_labels_is_bad_input(lab: Lab, tmp_path: Path) -> None:
    sample = tmp_path / "unlabelled.csv"
    lab.table.drop(columns=[lab.data.label]).to_csv(sample, index=False)
    with pytest.raises(BadInputError, match=r"has no 'default' \(data\.label\) column"):
        check_canary_labels(CanaryConfig(sample=sample, quality=True), lab.data)
    check_canary_labels(CanaryConfig(sample=sample), lab.data)  # without quality, no labels needed
