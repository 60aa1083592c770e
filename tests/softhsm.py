"""A PKCS#11 token for tests: SoftHSM2 with its tokens in a temp folder, never the system's.

The `softhsm_key` fixture points ``SOFTHSM2_CONF`` at a fresh config and token folder, sets
the user PIN in ``$ATTESTFLOW_PKCS11_PIN`` and creates the token and an EC P-256 key pair
inside it with ``python -m attestflow.signers init-token`` (the command users run), which
also exports the public key. It yields the key's PKCS#11 URI and that public key's path.
`upstream_verify` checks a bundle signature (the release's, or an environment's over the same
files) with the upstream ``model_signing`` command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "attestflow-test"
OBJECT = "test-signing"
PIN = "pin-7h2q-never-shown"
"""The user PIN: distinctive, so that a test can look for it in everything written."""
SO_PIN = "so-pin-5k8w"


def init_token(
    label: str, obj: str, public_key: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``python -m attestflow.signers init-token`` run as users run it."""
    command = [sys.executable, "-m", "attestflow.signers", "init-token", "--label", label, "--object", obj]
    return subprocess.run(
        [*command, "--public-key", str(public_key)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def upstream_verify(
    bundle: Path, public_key: Path, signature: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The upstream ``model_signing verify key`` of the bundle's signature (or another over the same
    files, `signature`: an environment's), leaving out what every such signature leaves out."""
    from attestflow.bundle import ENVIRONMENTS, EVIDENCE, MLFLOW_META, SIGNATURE

    left_out = (SIGNATURE, EVIDENCE, ENVIRONMENTS, MLFLOW_META)
    ignored = [a for p in left_out for a in ("--ignore-paths", str(bundle / p))]
    command = [str(Path(sys.executable).with_name("model_signing")), "verify", "key", "--signature"]
    return subprocess.run(
        [
            *command,
            str(bundle / (signature or SIGNATURE)),
            *ignored,
            "--public_key",
            str(public_key),
            str(bundle),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def softhsm_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A fresh SoftHSM2 token with a key pair generated inside it: (its ``pkcs11:`` URI, the public key PEM)."""
    folder = tmp_path / "softhsm"
    (folder / "tokens").mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    monkeypatch.setenv("ATTESTFLOW_PKCS11_PIN", PIN)
    monkeypatch.delenv("ATTESTFLOW_PKCS11_MODULE", raising=False)
    public_key = tmp_path / "token-key.pub.pem"
    made = init_token(TOKEN, OBJECT, public_key, {"ATTESTFLOW_PKCS11_SO_PIN": SO_PIN})
    assert made.returncode == 0, made.stderr
    yield f"pkcs11:token={TOKEN};object={OBJECT}", public_key
