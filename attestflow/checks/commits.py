"""Check ``commits``: every commit of the change is signed by a key the repository trusts.

A reviewed change is only as good as the guarantee that the commits merged are the ones
reviewed, by the people who wrote them. Git's own verification does the cryptography:
``git verify-commit`` with SSH signing (``gpg.format=ssh``) against an allowed-signers file
committed in the repository (``ssh-keygen``'s format: ``principal key-type key``), so trust is
reviewed like code. Only SSH signatures count: an OpenPGP signature would be checked against
whatever keyring the host has. The commits are those of ``base..HEAD``; with no base there is
no change, so nothing to check (`note` says so). Where protected refs are named, HEAD must be
reachable from one of them: a release builds only what was merged.

Settings: `CommitsSettings` (``allowed_signers``, ``protected_refs``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from attestflow.checks.config import CommitsSettings, load_check_config
from attestflow.checks.core import CheckContext, Finding
from attestflow.checks.gitfiles import repo_root, run_git
from attestflow.errors import BadInputError

CHECK = "commits"
SSH_SIGNATURE = "-----BEGIN SSH SIGNATURE-----"
NO_BASE = "no --base given: no commits to check"
SIGN_FIX = (
    "sign the commits with an SSH key listed in {signers} "
    "(git config gpg.format ssh; git config user.signingkey KEY; git rebase --exec 'git commit --amend "
    "--no-edit -S' BASE), or add the signer's public key to {signers} in a reviewed change"
)


def _verify(root: Path, commit: str, signers: Path) -> subprocess.CompletedProcess[str]:
    """``git verify-commit`` of `commit` with SSH signing against the allowed-signers file `signers`."""
    return run_git(
        root,
        "-c",
        "gpg.format=ssh",
        "-c",
        f"gpg.ssh.allowedSignersFile={signers.resolve()}",
        "verify-commit",
        "--raw",
        commit,
    )


def signature_problem(root: Path, commit: str, signers: Path) -> str | None:
    """Why `commit` is not signed by an allowed SSH key (unsigned, OpenPGP, unknown key), or None when it is."""
    raw = run_git(root, "cat-file", "commit", commit)
    if raw.returncode != 0:
        raise BadInputError(f"{commit}: not a commit in {root}")
    header = raw.stdout.split("\n\n", 1)[0]
    if "\ngpgsig " not in f"\n{header}":
        return "is not signed"
    if SSH_SIGNATURE not in header:
        return "is signed, but not with SSH (only SSH signatures are checked against allowed signers)"
    if _verify(root, commit, signers).returncode != 0:
        return f"has a signature that does not verify against {signers.name} (unknown key or altered commit)"
    return None


def signer(root: Path, commit: str, signers: Path) -> str:
    """Git's one line naming who signed `commit` (e.g. ``Good "git" signature for alice@... with ED25519 key``)."""
    done = _verify(root, commit, signers)
    lines = [ln for ln in (done.stderr + done.stdout).splitlines() if "signature" in ln.lower()]
    return lines[0].strip() if lines else "verified"


def _signers_file(root: Path, settings: CommitsSettings) -> Path:
    """The configured allowed-signers file; a missing one is bad input (no one would be trusted)."""
    path = root / settings.allowed_signers
    if not path.is_file():
        raise BadInputError(f"allowed signers file not found: {path} (commits.allowed_signers)")
    return path


def reachable_from(root: Path, commit: str, refs: list[str]) -> bool:
    """Whether `commit` is an ancestor of (or is) one of `refs`; an unknown ref is bad input."""
    for ref in refs:
        if run_git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
            raise BadInputError(f"protected ref {ref!r} is not a commit in {root} (commits.protected_refs)")
        if run_git(root, "merge-base", "--is-ancestor", commit, ref).returncode == 0:
            return True
    return False


def note(ctx: CheckContext) -> str | None:
    """What the check did not look at, for the check's result line (not a finding)."""
    return NO_BASE if ctx.base is None else None


def run(ctx: CheckContext) -> list[Finding]:
    """A finding for each commit of ``base..HEAD`` not signed by an allowed key, and for HEAD outside the protected refs."""
    settings = CommitsSettings.model_validate(ctx.settings)
    findings = []
    refs = settings.protected_refs
    if refs and not reachable_from(ctx.root, "HEAD", refs):
        findings.append(
            Finding(
                CHECK,
                f"HEAD is not reachable from a protected ref ({', '.join(refs)})",
                "merge the change into a protected branch through review, and release from there",
            )
        )
    if ctx.base is None:
        return findings
    signers = _signers_file(ctx.root, settings)
    rel = signers.relative_to(ctx.root).as_posix() if signers.is_relative_to(ctx.root) else str(signers)
    listed = run_git(ctx.root, "rev-list", "--reverse", f"{ctx.base}..HEAD")
    if listed.returncode != 0:
        raise BadInputError(f"--base {ctx.base}: not a commit in {ctx.root}")
    for commit in listed.stdout.split():
        problem = signature_problem(ctx.root, commit, signers)
        if problem:
            subject = run_git(ctx.root, "log", "-1", "--format=%s", commit).stdout.strip()
            findings.append(
                Finding(
                    CHECK, f"commit {commit[:12]} ({subject[:60]}) {problem}", SIGN_FIX.format(signers=rel)
                )
            )
    return findings


def release_commit_signed(repo: Path, allowed_signers: Path | None = None) -> tuple[bool, str]:
    """Whether the release's commit (HEAD of `repo`) is signed by an allowed SSH key, and git's word on it.

    The allowed signers are `allowed_signers`, else the file the repository's check config names
    (``commits.allowed_signers`` in ``configs/check.yaml``, relative to the repository's root).
    """
    if run_git(repo, "rev-parse", "--verify", "--quiet", "HEAD").returncode != 0:
        return False, f"{repo} is not a git work tree with a commit"
    if allowed_signers is None:
        root = repo_root(repo)
        allowed_signers = root / load_check_config(root).commits.allowed_signers
    if not allowed_signers.is_file():
        return False, f"no allowed signers file ({allowed_signers.name})"
    problem = signature_problem(repo, "HEAD", allowed_signers)
    return (False, f"HEAD {problem}") if problem else (True, signer(repo, "HEAD", allowed_signers))
