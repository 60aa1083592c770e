"""The risk tier: at ``high``, a release that cannot meet a required control is refused before training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from attestflow.audit import AuditLog
from attestflow.compliance.tier import unmet
from attestflow.config import load_config
from attestflow.context import open_release
from attestflow.errors import ConfigError, GateFailedError
from attestflow.policy import load_policy
from tests.code.compliance_planted import CARD_SECTIONS

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, *, run: list[str] | None = None, card: bool = True, **sections: Any) -> Path:
    """The bundled config at risk tier high, approved by a person, with a written model card, then `sections`."""
    policy = yaml.safe_load((ROOT / "configs/gates.yaml").read_text())
    policy["run"] = run or policy["run"]
    (tmp_path / "gates.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(CARD_SECTIONS if card else {"intended_use": "x"}))
    raw = yaml.safe_load((ROOT / "configs/release.yaml").read_text())
    raw.update(
        workspace=str(tmp_path / "ws"),
        compliance={"risk_tier": "high"},
        model_card={"path": str(tmp_path / "card.yaml")},
        approve={"mode": "human", "approvers": ["alice"]},
    )
    raw["gates"]["policy"] = str(tmp_path / "gates.yaml")
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _unmet(path: Path) -> list[str]:
    cfg = load_config(path)
    return unmet(cfg, load_policy(cfg.gates.policy))


def test_a_high_risk_config_that_meets_every_required_control_passes(tmp_path: Path) -> None:
    assert _unmet(_config(tmp_path)) == []


def test_a_high_risk_release_without_the_fairness_gate_is_refused_before_training(tmp_path: Path) -> None:
    without = ["format", "data", "performance", "regression", "robustness", "resources"]
    config = _config(tmp_path, run=without)
    with pytest.raises(GateFailedError) as e:
        open_release(config, [], flow_run_id="r1")
    assert (
        "risk tier high: eu-ai-act art9 (Article 9, risk management system) requires gate:fairness: "
        in str(e.value)
    )
    assert any(
        "nist-ai-rmf MEASURE-2.11" in r and "fairness is not in the policy's run list" in r
        for r in e.value.reasons
    )
    # refused at the start: no release folder, no training run, only the refusal in the audit log
    workspace = tmp_path / "ws"
    assert not (workspace / "releases").exists() and not list(workspace.glob("**/*.safetensors"))
    (entry,) = AuditLog.of(workspace).entries()
    assert entry["event"] == "release_failed" and entry["details"]["stage"] == "start"
    assert entry["details"]["exit_code"] == 1


def test_automatic_approval_at_high_risk_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, approve={"mode": "auto", "approvers": []})
    with pytest.raises(
        GateFailedError,
        match=r"art14 \(Article 14, human oversight\) requires approval:human: approve.mode is auto",
    ):
        open_release(config, [], flow_run_id="r1")
    assert not (tmp_path / "ws" / "releases").exists()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"card": False}, "has no limitations section"),
        ({"data": {"sensitive": None}}, "requires sensitive_attribute: data.sensitive is unset"),
        ({"snapshot": {"push": False}}, "requires data_snapshot: snapshot.push is false"),
        ({"explain": {"enabled": False}}, "requires attributions: explain.enabled is false"),
    ],
)
def test_each_thing_a_high_risk_release_needs_is_named_when_absent(
    tmp_path: Path, change: dict[str, Any], reason: str
) -> None:
    assert any(reason in r for r in _unmet(_config(tmp_path, **change)))


def test_lower_tiers_require_nothing(tmp_path: Path) -> None:
    path = _config(tmp_path, run=["format", "performance"], approve={"mode": "auto", "approvers": []})
    for tier in ("minimal", "limited"):
        cfg = load_config(path, [f"compliance.risk_tier={tier}"])
        assert unmet(cfg, load_policy(cfg.gates.policy)) == []


def test_high_risk_without_any_mapping_is_bad_config(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, compliance={"mappings": str(tmp_path / "none")}))
    with pytest.raises(ConfigError, match="needs the control mappings"):
        unmet(cfg, load_policy(cfg.gates.policy))


def test_a_policy_with_the_attribution_gate_and_no_explain_stage_is_refused_before_any_work(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, explain={"enabled": False}, compliance={"risk_tier": "limited"})
    with pytest.raises(ConfigError, match=r"runs the attribution gate but explain\.enabled is false"):
        open_release(config, [], flow_run_id="r1")
    assert not (tmp_path / "ws" / "releases").exists()
