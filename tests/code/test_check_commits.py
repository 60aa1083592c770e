"""The commits check: SSH-signed commits verified by git against an allowed-signers file, keys made in the test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from attestflow.checks.commits import NO_BASE, note, release_commit_signed, run
from attestflow.checks.core import CheckContext
from attestflow.errors import BadInputError
from tests.conftest import ExampleRepo

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed")


def git(root: Path, *args: str) -> str:
    """Run git in `root` with a fixed identity; its stdout."""
    ident = ["-c", "user.name=T", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", *ident, *args], cwd=root, check=True, capture_output=True, text=True).stdout


def keypair(folder: Path, name: str) -> Path:
    """A fresh ed25519 key pair without a passphrase; the private key's path."""
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


def commit(root: Path, message: str, key: Path | None = None) -> str:
    """A commit changing one file, SSH-signed with `key` when given; its sha."""
    (root / "file.txt").write_text(message)
    git(root, "add", "file.txt")
    sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-S"] if key else ["commit"]
    git(root, *sign, "-q", "-m", message)
    return git(root, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A repository whose base commit lists the `alice` key as an allowed signer; and alice's and mallory's keys."""
    keys = tmp_path / "keys"
    keys.mkdir()
    alice, mallory = keypair(keys, "alice"), keypair(keys, "mallory")
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "configs").mkdir()
    pub = alice.with_suffix(".pub").read_text().split()
    (root / "configs" / "allowed_signers").write_text(f"alice@example.com {pub[0]} {pub[1]}\n")
    git(root, "add", "configs")
    git(root, "commit", "-q", "-m", "base")
    git(root, "tag", "base")
    return root, alice, mallory


def test_commits_signed_by_an_allowed_key_are_clean(repo: tuple[Path, Path, Path]) -> None:
    root, alice, _ = repo
    commit(root, "one", alice)
    commit(root, "two", alice)
    assert run(CheckContext(root=root, base="base")) == []
    signed, detail = release_commit_signed(root)
    assert signed and "alice@example.com" in detail


def test_the_release_commit_is_checked_against_the_signers_file_the_check_config_names(
    repo: tuple[Path, Path, Path],
) -> None:
    root, alice, _ = repo
    (root / "trust").mkdir()
    git(root, "mv", "configs/allowed_signers", "trust/signers")
    git(root, "commit", "-q", "-m", "signers moved")
    commit(root, "signed", alice)
    assert release_commit_signed(root) == (False, "no allowed signers file (allowed_signers)")

    (root / "configs" / "check.yaml").write_text("commits:\n  allowed_signers: trust/signers\n")
    git(root, "add", "configs/check.yaml")
    git(root, "-c", "gpg.format=ssh", "-c", f"user.signingkey={alice}", "commit", "-S", "-q", "-m", "config")
    signed, detail = release_commit_signed(root)
    assert signed and "alice@example.com" in detail


def test_an_unsigned_commit_is_a_finding(repo: tuple[Path, Path, Path]) -> None:
    root, alice, _ = repo
    commit(root, "signed", alice)
    sha = commit(root, "unsigned change")
    [finding] = run(CheckContext(root=root, base="base"))
    assert finding.check == "commits" and sha[:12] in finding.message and "is not signed" in finding.message
    assert "configs/allowed_signers" in finding.fix
    assert release_commit_signed(root) == (False, "HEAD is not signed")


def test_a_commit_signed_by_an_unknown_key_is_a_finding(repo: tuple[Path, Path, Path]) -> None:
    root, _, mallory = repo
    sha = commit(root, "looks signed", mallory)
    [finding] = run(CheckContext(root=root, base="base"))
    assert sha[:12] in finding.message and "does not verify" in finding.message
    signed, detail = release_commit_signed(root)
    assert not signed and "does not verify" in detail


def test_without_a_base_there_are_no_commits_to_check_and_the_result_says_so(
    repo: tuple[Path, Path, Path],
) -> None:
    root, _, _ = repo
    commit(root, "unsigned")
    ctx = CheckContext(root=root)
    assert run(ctx) == [] and note(ctx) == NO_BASE
    assert note(CheckContext(root=root, base="base")) is None


def test_head_outside_every_protected_ref_is_a_finding(repo: tuple[Path, Path, Path]) -> None:
    root, alice, _ = repo
    git(root, "checkout", "-q", "-b", "feature")
    commit(root, "feature work", alice)
    settings = {"protected_refs": ["main"]}
    [finding] = run(CheckContext(root=root, base="base", settings=settings))
    assert "not reachable from a protected ref (main)" in finding.message
    git(root, "checkout", "-q", "main")
    git(root, "merge", "-q", "--ff-only", "feature")
    assert run(CheckContext(root=root, base="base", settings=settings)) == []


def test_an_unknown_base_or_protected_ref_or_a_missing_signers_file_is_bad_input(
    repo: tuple[Path, Path, Path],
) -> None:
    root, _, _ = repo
    with pytest.raises(BadInputError, match="--base nope"):
        run(CheckContext(root=root, base="nope"))
    with pytest.raises(BadInputError, match="protected ref 'gone'"):
        run(CheckContext(root=root, settings={"protected_refs": ["gone"]}))
    with pytest.raises(BadInputError, match="allowed signers file not found"):
        run(CheckContext(root=root, base="base", settings={"allowed_signers": "missing"}))


def test_a_protected_environment_takes_releases_from_signed_commits_only(
    repo: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, example_repo: ExampleRepo
) -> None:
    import attestflow.context as context_module
    from attestflow.audit import AuditLog
    from attestflow.errors import GateFailedError

    root, alice, mallory = repo
    monkeypatch.setattr(context_module, "CODE_ROOT", root)
    config = example_repo.write_config(
        "protected.yaml", sign={"allow_dirty": True, "require_signed_commit": True}
    )
    for key in (None, mallory):  # unsigned, then signed by a key that is not an allowed signer
        commit(root, f"by {key}", key)
        with pytest.raises(GateFailedError, match="signed commits only"):
            context_module.open_release(config, [], flow_run_id="r1")
    failed = [e for e in AuditLog.of(example_repo.workspace).entries() if e["event"] == "release_failed"]
    assert len(failed) == 2 and all("signed commits only" in e["details"]["reason"] for e in failed)

    commit(root, "by alice", alice)
    context_module.open_release(config, [], flow_run_id="r2")  # an allowed signer's commit opens the release
