"""The gate policy: strict, explicit about the first release, and identified by its digest."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from attestflow.errors import ConfigError
from attestflow.policy import GateName, Threshold, load_policy
from attestflow.records import GateDecision, write_json

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "configs/gates.yaml"


def _write(tmp_path: Path, edit: Any) -> Path:
    raw = yaml.safe_load(BUNDLED.read_text())
    edit(raw)
    path = tmp_path / "gates.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_bundled_policy_runs_every_gate_with_an_explicit_first_release_rule() -> None:
    policy = load_policy(BUNDLED)
    assert set(policy.run) == set(get_args(GateName))
    assert policy.baseline.alias == "champion"
    assert policy.baseline.first_release in ("absolute_only", "require_approval")
    assert policy.digest().algorithm == "sha256" and policy.digest().of == "canonical JSON"


def test_digest_follows_the_rules_not_the_layout(tmp_path: Path) -> None:
    same = tmp_path / "same.yaml"
    same.write_text("# a comment\n" + BUNDLED.read_text())
    assert load_policy(same).digest() == load_policy(BUNDLED).digest()

    def loosen(raw: dict[str, Any]) -> None:
        raw["performance"]["thresholds"][0]["threshold"] = 0.5

    assert load_policy(_write(tmp_path, loosen)).digest() != load_policy(BUNDLED).digest()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["performance"].update(minimum=0.5), "unknown key 'performance.minimum'"),
        (lambda r: r["baseline"].pop("first_release"), "missing required key 'baseline.first_release'"),
        (lambda r: r["baseline"].update(first_release="yolo"), "baseline.first_release"),
        (lambda r: r.pop("fairness"), "fairness are listed in 'run' but have no section"),
        (lambda r: r["run"].insert(0, "vibes"), "run.0"),
        (lambda r: r["performance"]["thresholds"].append({"metric": "bleu", "threshold": 1}), "metric"),
        (lambda r: r["attribution"].update(max_sensitive_share=1.5), "attribution.max_sensitive_share"),
        (
            lambda r: r["robustness"].update(noise_scales=[0.1, -0.2]),
            "noise_scales must all be greater than 0",
        ),
    ],
)
def test_an_invalid_policy_is_one_clear_config_error(tmp_path: Path, edit: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_policy(_write(tmp_path, edit))


def test_missing_or_broken_policy_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="gate policy not found"):
        load_policy(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_policy(broken)


def test_thresholds_measure_the_margin_on_the_passing_side() -> None:
    at_least = Threshold(metric="accuracy", threshold=0.8)
    at_most = Threshold(metric="latency", threshold=5.0, direction="at_most")
    assert at_least.margin(0.85) == pytest.approx(0.05) and at_least.passes(0.8)
    assert at_most.margin(7.0) == -2.0 and not at_most.passes(7.0)
    assert not at_least.passes(math.nan) and not at_most.passes(math.nan)


def test_decision_records_are_strict_json_with_null_for_what_was_not_measured(tmp_path: Path) -> None:
    d = GateDecision(
        "fairness", "worst_group_accuracy", math.nan, 0.8, math.nan, False, "no groups", "sha256:x"
    )
    path = write_json(tmp_path / "gates.json", [d])
    record = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert record[0]["value"] is None and record[0]["margin"] is None and record[0]["ci"] is None


def test_a_log_loss_bound_is_an_upper_bound_unless_written_otherwise_and_never_a_lower_one(
    tmp_path: Path,
) -> None:
    def bound_log_loss(direction: str | None) -> Any:
        def edit(raw: dict[str, Any]) -> None:
            rule = {"metric": "log_loss", "threshold": 0.5} | ({"direction": direction} if direction else {})
            raw["performance"]["thresholds"].append(rule)
            raw["fairness"]["thresholds"].append({"metric": "accuracy_difference", "threshold": 0.1})

        return edit

    policy = load_policy(_write(tmp_path, bound_log_loss(None)))
    assert policy.performance is not None and policy.fairness is not None
    assert policy.performance.thresholds[-1].direction == "at_most"
    assert policy.fairness.thresholds[-1].direction == "at_most"
    assert load_policy(_write(tmp_path, bound_log_loss("at_most"))).digest() == policy.digest()
    with pytest.raises(ConfigError, match="log_loss is better lower, so its bound is direction at_most"):
        load_policy(_write(tmp_path, bound_log_loss("at_least")))
