"""The policy check: a gate policy loosened since the base is a finding unless its approval is committed."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from attestflow.checks.core import CheckContext
from attestflow.checks.policy_diff import run
from attestflow.errors import BadInputError

ROOT = Path(__file__).resolve().parents[2]
POLICY = "configs/gates.yaml"


def git(root: Path, *args: str) -> None:
    """Run git in `root` with a fixed identity."""
    ident = ["-c", "user.name=T", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", *ident, *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose base commit (tag ``base``) holds this project's gate policy."""
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / POLICY, tmp_path / POLICY)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "base")
    git(tmp_path, "tag", "base")
    return tmp_path


def change(root: Path, old: str, new: str) -> None:
    """Edit the policy at HEAD and commit it."""
    path = root / POLICY
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    git(root, "commit", "-q", "-am", "policy change")


def check(root: Path) -> list[str]:
    """The messages of the policy check against ``base``."""
    return [f.message for f in run(CheckContext(root=root, base="base"))]


def test_a_lowered_threshold_is_a_finding_naming_gate_metric_old_and_new(repo: Path) -> None:
    change(
        repo, "{metric: accuracy, direction: at_least, threshold: 0.80}", "{metric: accuracy, threshold: 0.5}"
    )
    [finding] = run(CheckContext(root=repo, base="base"))
    assert finding.check == "policy" and finding.path == POLICY
    assert "performance: accuracy threshold lowered from 0.8 to 0.5" in finding.message
    assert "configs/policy-approvals/" in finding.fix


def test_an_at_most_threshold_raised_is_a_finding(repo: Path) -> None:
    change(
        repo,
        "demographic_parity_difference, direction: at_most, threshold: 0.20",
        "demographic_parity_difference, threshold: 0.9",
    )
    assert check(repo) == [
        f"{POLICY} loosened since base: fairness: demographic_parity_difference threshold raised from 0.2 to 0.9"
    ]


def test_a_removed_gate_and_a_removed_metric_are_findings(repo: Path) -> None:
    change(
        repo,
        "run: [format, data, performance, regression, fairness,",
        "run: [format, data, performance, fairness,",
    )
    change(repo, "    - {metric: roc_auc, direction: at_least, threshold: 0.85}\n", "")
    messages = check(repo)
    assert any("gate regression removed from run" in m for m in messages)
    assert any("performance: metric roc_auc removed" in m for m in messages)


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        (
            "allowed_domains: [ai.onnx]",
            "allowed_domains: [ai.onnx, com.microsoft]",
            "allowed_domains widened",
        ),
        ("first_release: absolute_only", "first_release: require_approval", None),
        ("  max_drop: 0.05\n", "  max_drop: 0.2\n", "robustness: max_drop raised from 0.05 to 0.2"),
        ("fgsm_epsilon: 0.05", "fgsm_epsilon: 0.01", "robustness: fgsm_epsilon lowered"),
        (
            "{metric: accuracy, max_drop: 0.02}",
            "{metric: accuracy, max_drop: 0.1}",
            "regression: accuracy max_drop",
        ),
        ("confidence: 0.95", "confidence: 0.99", "regression: confidence raised"),
        ("max_file_kb: 256", "max_file_kb: 100000", "resources: max_file_kb raised"),
        (
            "{batch_size: 1, max_p50_ms: 1,",
            "{batch_size: 1, max_p50_ms: 50,",
            "max_p50_ms at batch size 1 raised",
        ),
        ("pii_kinds: [email, phone, card]", "pii_kinds: [email]", "card, phone no longer scanned"),
        ("max_pii_cells: 0", "max_pii_cells: 3", "data: max_pii_cells raised"),
    ],
)
def test_each_kind_of_loosening_is_seen_and_tightening_is_not(
    repo: Path, old: str, new: str, said: str | None
) -> None:
    change(repo, old, new)
    messages = check(repo)
    if said is None:
        assert messages == []
    else:
        assert len(messages) == 1 and said in messages[0]


def test_a_weakened_first_release_rule_is_a_finding(repo: Path) -> None:
    change(repo, "first_release: absolute_only", "first_release: require_approval")
    git(repo, "tag", "-f", "base")
    change(repo, "first_release: require_approval", "first_release: absolute_only")
    assert check(repo) == [
        f"{POLICY} loosened since base: baseline: first_release weakened from require_approval to absolute_only"
    ]


def test_tightened_thresholds_are_clean(repo: Path) -> None:
    change(
        repo,
        "{metric: accuracy, direction: at_least, threshold: 0.80}",
        "{metric: accuracy, threshold: 0.81}",
    )
    change(repo, "max_file_kb: 256", "max_file_kb: 128")
    assert check(repo) == []


def test_a_committed_approval_for_the_new_file_silences_it(repo: Path) -> None:
    change(repo, "threshold: 0.80}", "threshold: 0.70}")
    digest = hashlib.sha256((repo / POLICY).read_bytes()).hexdigest()
    approval = repo / "configs" / "policy-approvals" / f"{digest}.yaml"
    approval.parent.mkdir()
    approval.write_text(
        "approved_by: carol@example.com\nreason: the new data is harder; see the 2025 review\n"
    )
    assert len(check(repo)) == 1  # not committed yet
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "approval")
    assert check(repo) == []
    change(
        repo, "threshold: 0.70}", "threshold: 0.60}"
    )  # a later edit is a new file: the approval no longer names it
    assert len(check(repo)) == 1


def test_a_new_policy_file_is_not_a_loosening_and_no_base_compares_nothing(repo: Path) -> None:
    shutil.copy(ROOT / "configs" / "gates-text.yaml", repo / "configs" / "gates-text.yaml")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "new policy")
    assert check(repo) == []
    change(repo, "threshold: 0.80}", "threshold: 0.10}")
    assert run(CheckContext(root=repo)) == []


def test_a_malformed_policy_at_head_is_bad_input(repo: Path) -> None:
    change(repo, "version: 1", "version: 1\nunknown_gate: {}")
    with pytest.raises(BadInputError, match="unknown key 'unknown_gate'"):
        check(repo)
    (repo / POLICY).write_text("run: [performance\n")
    with pytest.raises(BadInputError, match="invalid YAML"):
        check(repo)
