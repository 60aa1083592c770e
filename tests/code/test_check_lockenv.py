"""The lock check: the installed environment equals the lock, and the environment's digest."""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
from pathlib import Path

import pytest

from attestflow.checks.core import CheckContext
from attestflow.checks.lockenv import compare, environment_digest, run
from attestflow.checks.lockfile import Installed, parse_lock
from attestflow.errors import GateFailedError
from tests.conftest import ExampleRepo

ROOT = Path(__file__).resolve().parents[2]


def lock_of_this_environment(tmp_path: Path, drop: str | None = None, change: str | None = None) -> Path:
    """A copy of this repository's locks (the main one and the Spark extra's) with one pin removed or changed."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in ("requirements.lock", "requirements-spark.lock"):
        lines = []
        for line in (ROOT / name).read_text().splitlines():
            if drop and line.startswith(f"{drop}=="):
                line = "# dropped"
            if change and line.startswith(f"{change}=="):
                line = re.sub(r"==\S+", "==0.0.1", line, count=1)
            lines.append(line)
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "attestflow"\n')
    return tmp_path


def test_this_repositorys_environment_equals_its_lock() -> None:
    assert run(CheckContext(root=ROOT)) == []


def test_a_changed_version_in_the_lock_is_a_finding_naming_the_distribution(tmp_path: Path) -> None:
    [finding] = run(CheckContext(root=lock_of_this_environment(tmp_path, change="packaging")))
    assert finding.check == "lock" and finding.path == "requirements.lock" and finding.line
    assert f"packaging {md.version('packaging')} is installed but the lock pins 0.0.1" in finding.message
    assert "--require-hashes" in finding.fix


def test_a_distribution_the_lock_does_not_pin_is_an_extra_finding(tmp_path: Path) -> None:
    [finding] = run(CheckContext(root=lock_of_this_environment(tmp_path, drop="packaging")))
    assert "packaging" in finding.message and "not in the lock" in finding.message


def test_a_pin_that_is_not_installed_is_a_missing_finding(tmp_path: Path) -> None:
    root = lock_of_this_environment(tmp_path)
    with (root / "requirements.lock").open("a") as f:
        f.write("surely-not-installed-dist==1.0 \\\n    --hash=sha256:00\n")
    [finding] = run(CheckContext(root=root))
    assert finding.message == "surely-not-installed-dist==1.0 is locked but not installed"


def test_an_archive_hash_the_lock_does_not_list_is_a_finding(tmp_path: Path) -> None:
    (tmp_path / "l.lock").write_text("demo==1.0 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n")
    pins = parse_lock(tmp_path / "l.lock")
    good = {"demo": Installed("demo", "1.0", frozenset({"sha256:bb"}))}
    bad = {"demo": Installed("demo", "1.0", frozenset({"sha256:cc"}))}
    unrecorded = {"demo": Installed("demo", "1.0", frozenset())}
    assert compare(pins, good, "l.lock", set()) == compare(pins, unrecorded, "l.lock", set()) == []
    [finding] = compare(pins, bad, "l.lock", set())
    assert "demo 1.0" in finding.message and "hash" in finding.message


def test_an_optional_extras_pin_may_be_installed_but_only_at_its_pin(tmp_path: Path) -> None:
    (tmp_path / "l.lock").write_text("demo==1.0 \\\n    --hash=sha256:aa\n")
    (tmp_path / "x.lock").write_text(
        "demo==1.0 \\\n    --hash=sha256:aa\nextra==2.0 \\\n    --hash=sha256:ee\n"
    )
    pins, optional = (
        parse_lock(tmp_path / "l.lock"),
        {"extra": (parse_lock(tmp_path / "x.lock")["extra"], "x.lock")},
    )
    base = {"demo": Installed("demo", "1.0", frozenset())}
    assert compare(pins, base, "l.lock", set(), optional) == []
    assert (
        compare(pins, {**base, "extra": Installed("extra", "2.0", frozenset())}, "l.lock", set(), optional)
        == []
    )
    [other] = compare(
        pins, {**base, "extra": Installed("extra", "2.1", frozenset())}, "l.lock", set(), optional
    )
    assert other.path == "x.lock" and "extra 2.1 is installed but the lock pins 2.0" in other.message
    [unlocked] = compare(pins, {**base, "extra": Installed("extra", "2.0", frozenset())}, "l.lock", set())
    assert "not in the lock" in unlocked.message


def test_a_pin_whose_marker_excludes_this_interpreter_is_not_expected_installed(tmp_path: Path) -> None:
    (tmp_path / "l.lock").write_text('winonly==1.0 ; sys_platform == "win32" \\\n    --hash=sha256:aa\n')
    assert compare(parse_lock(tmp_path / "l.lock"), {}, "l.lock", set()) == []


def test_the_environment_digest_is_sha256_over_the_installed_list_and_stable() -> None:
    digest = environment_digest()
    assert digest.algorithm == "sha256" and len(digest.value) == 64
    assert environment_digest() == digest


def test_a_release_from_an_environment_that_differs_from_its_lock_is_refused_before_any_work(
    tmp_path: Path, example_repo: ExampleRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import attestflow.context as context_module
    from attestflow.audit import AuditLog

    subprocess.run(
        ["git", "init", "-q", str(example_repo.root)], check=True
    )  # the preflight checks git work trees
    code_root = lock_of_this_environment(tmp_path / "code", change="packaging")
    monkeypatch.setattr(context_module, "CODE_ROOT", code_root)
    config = example_repo.write_config("drifted.yaml", sign={"allow_dirty": True})
    with pytest.raises(GateFailedError, match=r"preflight: lock .*packaging .* the lock pins 0\.0\.1"):
        context_module.open_release(config, [], flow_run_id="r1")
    (failed,) = AuditLog.of(example_repo.workspace).entries()
    assert failed["event"] == "release_failed" and failed["details"]["stage"] == "preflight"
    assert not (example_repo.workspace / "releases").exists()  # no stage ran, nothing was written
