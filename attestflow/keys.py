"""Key files: the embedded default's EC P-256 key pair in the workspace, and PEM keys as configured.

Created on first use; the private key file is created with mode 0600 and its contents are
never logged or recorded. Real deployments point `sign.private_key`/`sign.public_key` at
their own key, or keep the private half in a Prefect Secret block or a PKCS#11 token
(`attestflow.signers`, where everything that signs gets its key). The key id recorded in
evidence is the SHA-256 of the public key (DER).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestflow.errors import BadInputError


@dataclass(frozen=True)
class KeyPair:
    """Paths of a PEM key pair and the public key's id."""

    private_key: Path
    public_key: Path
    key_id: str
    """``sha256:`` of the DER-encoded public key."""


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Read a PEM EC public key; anything else is bad input."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as e:
        raise BadInputError(f"cannot read public key {path}: {e}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise BadInputError(f"{path}: not an elliptic-curve public key")
    return key


def key_password() -> bytes | None:
    """The password of encrypted PEM private keys: ``$ATTESTFLOW_KEY_PASSWORD``, if set."""
    password = os.environ.get("ATTESTFLOW_KEY_PASSWORD")
    return password.encode() if password else None


def private_key_from_pem(pem: bytes, where: str) -> ec.EllipticCurvePrivateKey:
    """A PEM EC private key (unencrypted, or with ``ATTESTFLOW_KEY_PASSWORD``); `where` names it in errors."""
    try:
        key = serialization.load_pem_private_key(pem, key_password())
    except (ValueError, TypeError) as e:
        raise BadInputError(f"cannot read private key {where}: {type(e).__name__}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BadInputError(f"{where}: not an elliptic-curve private key")
    return key


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Read a PEM EC private key (unencrypted, or with ``ATTESTFLOW_KEY_PASSWORD``)."""
    try:
        pem = path.read_bytes()
    except OSError as e:
        raise BadInputError(f"cannot read private key {path}: {type(e).__name__}") from None
    return private_key_from_pem(pem, str(path))


def ensure_keypair(folder: Path) -> KeyPair:
    """The workspace key pair in `folder`, created (private key mode 0600) if absent."""
    return ensure_keypair_at(folder / "signing-key.pem", folder / "signing-key.pub.pem")


def ensure_keypair_at(private: Path, public: Path) -> KeyPair:
    """The key pair at these two paths, created (private key mode 0600) if the private half is absent."""
    if not private.exists():
        private.parent.mkdir(parents=True, exist_ok=True)
        public.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return KeyPair(private, public, key_id(load_public_key(public)))


def keypair_from(private_key: Path, public_key: Path) -> KeyPair:
    """A configured key pair; its two halves must belong together."""
    priv, pub = load_private_key(private_key), load_public_key(public_key)
    if key_id(priv.public_key()) != key_id(pub):
        raise BadInputError(f"{private_key} and {public_key} are not one key pair")
    return KeyPair(private_key, public_key, key_id(pub))


def configured_keypair(private_key: Path | None, public_key: Path | None) -> KeyPair | None:
    """The pair `sign.private_key`/`sign.public_key` names, None when neither is set; half a pair is bad input."""
    if private_key is None and public_key is None:
        return None
    if public_key is None:
        raise BadInputError(
            "sign.private_key is set but sign.public_key is not: set both halves of the key pair, or neither"
        )
    if private_key is None:
        raise BadInputError(
            "sign.public_key is set but sign.private_key is not: a release would sign with another key; "
            "set both halves of the key pair, or neither"
        )
    return keypair_from(private_key, public_key)


def trusted_public_key(configured: Path | None, workspace_root: Path) -> Path:
    """The public key that verification trusts: the configured one, else the workspace's."""
    path = configured or workspace_root / "keys" / "signing-key.pub.pem"
    if not path.is_file():
        raise BadInputError(
            f"no trusted public key at {path} (set sign.public_key, or release once to create it)"
        )
    return path
