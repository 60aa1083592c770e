"""Everything that signs gets its key here: a PEM file, a Prefect Secret block or a PKCS#11 token.

One interface (`Signer`) makes the two kinds of signature attestflow writes: DSSE envelopes of
in-toto statements (securesystemslib, verified by `attestflow.dsse.dsse_verify`) and the
model-signing signature of a release bundle. Where the private half lives is configuration
(`KeySpec`: ``private_key``, ``secret_block`` or ``pkcs11_uri``, and always the PEM
``public_key`` that verification trusts); `signer_for` checks, before anything is signed,
that the private half pairs with that public key, so a release never signs with a key its
verifiers do not trust. Prefect tasks are handed the `KeySpec` (picklable, no secret in it)
and build their signer where they sign.

A Secret block's PEM is never written to a file: the key lives in process memory, and
model-signing, which reads a key from a path, is given an anonymous memory file
(``memfd_create``; a 0600 file deleted at once where that does not exist) for the moment it
reads it. A token's private key never leaves the token (`attestflow.pkcs11`).

``python -m attestflow.signers init-token`` creates a SoftHSM2 token and a key pair inside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestflow import pkcs11
from attestflow.bundle import sign_bundle, sign_bundle_with
from attestflow.dsse import dsse_sign, dsse_sign_with, sslib_key
from attestflow.errors import BadInputError
from attestflow.keys import (
    configured_keypair,
    ensure_keypair,
    ensure_keypair_at,
    key_id,
    load_private_key,
    load_public_key,
    private_key_from_pem,
)
from attestflow.settings import KeySpec

__all__ = ["KeySpec", "Signer", "signer_for"]


class Signer(Protocol):
    """A private key that signs statements (DSSE) and release bundles (model-signing)."""

    @property
    def key_id(self) -> str:
        """``sha256:`` of the public key's DER (`attestflow.keys.key_id`)."""
        ...

    @property
    def public_key(self) -> Path:
        """The PEM public half, the one verification trusts."""
        ...

    def sign_dsse(self, stmt: dict[str, Any]) -> dict[str, Any]: ...

    def sign_bundle(self, bundle_dir: Path, signature: Path | None = None) -> None:
        """The bundle's model-signing signature, written to `signature` (default: the bundle's own)."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class FileSigner:
    """A PEM private key file (encrypted with ``$ATTESTFLOW_KEY_PASSWORD``, or not)."""

    private_key: Path
    public_key: Path
    key_id: str

    def sign_dsse(self, stmt: dict[str, Any]) -> dict[str, Any]:
        """A DSSE envelope of `stmt` signed with the key file."""
        return dsse_sign(stmt, load_private_key(self.private_key))

    def sign_bundle(self, bundle_dir: Path, signature: Path | None = None) -> None:
        """The bundle's model-signing signature, made from the key file."""
        sign_bundle(bundle_dir, self.private_key, signature)

    def describe(self) -> str:
        return "file"


@dataclass(frozen=True)
class SecretBlockSigner:
    """A PEM private key held in a Prefect ``Secret`` block, kept in memory only."""

    block: str
    public_key: Path
    key_id: str
    key: ec.EllipticCurvePrivateKey

    def sign_dsse(self, stmt: dict[str, Any]) -> dict[str, Any]:
        """A DSSE envelope of `stmt` signed with the block's key."""
        return dsse_sign(stmt, self.key)

    def sign_bundle(self, bundle_dir: Path, signature: Path | None = None) -> None:
        """The bundle's model-signing signature; model-signing reads the key from a memory file."""
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        with _memory_file(pem) as path:
            import model_signing

            signing = model_signing.signing.Config().use_elliptic_key_signer(private_key=path)
        sign_bundle_with(bundle_dir, signing, signature)

    def describe(self) -> str:
        return f"prefect-secret:{self.block}"


@dataclass(frozen=True)
class Pkcs11Signer:
    """A key pair generated inside a PKCS#11 token; the token signs, the private key never leaves it."""

    token_key: pkcs11.TokenKey
    public_key: Path
    key_id: str

    def sign_dsse(self, stmt: dict[str, Any]) -> dict[str, Any]:
        """A DSSE envelope of `stmt` (securesystemslib's Envelope and PAE) signed inside the token."""
        return dsse_sign_with(stmt, _TokenSslibSigner(self.token_key, load_public_key(self.public_key)))

    def sign_bundle(self, bundle_dir: Path, signature: Path | None = None) -> None:
        """The bundle's model-signing signature through model-signing's own PKCS#11 signer."""
        import model_signing

        module = pkcs11.module_path()
        with pkcs11.TOKEN_LOCK:
            try:
                signing = model_signing.signing.Config().use_pkcs11_signer(
                    pkcs11_uri=pkcs11.bundle_signer_uri(self.token_key),
                    module_paths=[str(Path(module).parent)],
                )
            except Exception as e:  # PyKCS11Error, ValueError: worded without the PIN
                raise BadInputError(
                    f"model-signing cannot use {self.describe()}: {pkcs11.hide_pin(str(e))}"
                ) from None
            sign_bundle_with(bundle_dir, signing, signature)
            del signing  # closes model-signing's session (and login) before the lock is let go

    def describe(self) -> str:
        return self.token_key.uri


class _TokenSslibSigner:
    """securesystemslib's `Signer` interface over the token, so the DSSE envelope is securesystemslib's."""

    def __init__(self, token_key: pkcs11.TokenKey, public: ec.EllipticCurvePublicKey) -> None:
        self._token_key = token_key
        self._public = sslib_key(public)

    @property
    def public_key(self) -> Any:
        return self._public

    def sign(self, payload: bytes) -> Any:
        from securesystemslib.signer import Signature

        signature = pkcs11.signed_with_token(self._token_key, payload)
        return Signature(self._public.keyid, signature.hex())


@contextmanager
def _memory_file(data: bytes) -> Iterator[Path]:
    """A path whose file holds `data` in memory only (memfd), or a 0600 temp file deleted on exit."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("attestflow-key", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield Path(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="attestflow-key-") as tmp:
        path = Path(tmp) / "key.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path


def signer_for(spec: KeySpec, workspace_root: Path) -> Signer:
    """The signer of `spec`, its private half checked to pair with its public key; bad keys: `BadInputError`."""
    if spec.secret_block is not None:
        public = _required_public(spec, "secret_block")
        key = private_key_from_pem(_secret_pem(spec.secret_block), f"in Secret block {spec.secret_block!r}")
        _pairs(key.public_key(), public, f"the key in Secret block {spec.secret_block!r}")
        return SecretBlockSigner(spec.secret_block, public, key_id(key.public_key()), key)
    if spec.pkcs11_uri is not None:
        public = _required_public(spec, "pkcs11_uri")
        token_key = pkcs11.parse_uri(spec.pkcs11_uri)
        pkcs11.use_workspace_softhsm(workspace_root)
        with pkcs11.token_session(token_key) as session:
            in_token = pkcs11.public_key_in(session, token_key)
        _pairs(in_token, public, f"the key {token_key.uri}")
        return Pkcs11Signer(token_key, public, key_id(in_token))
    return _file_signer(spec, workspace_root)


def check_key(spec: KeySpec, workspace_root: Path) -> None:
    """What can be checked of `spec` without its secret, before any stage: half a pair, unreadable keys, a bad URI."""
    if spec.secret_block is not None or spec.pkcs11_uri is not None:
        if spec.pkcs11_uri is not None:
            pkcs11.parse_uri(spec.pkcs11_uri)
        load_public_key(_required_public(spec, "secret_block" if spec.secret_block else "pkcs11_uri"))
        return
    private, public = spec.private_key, spec.public_key
    if private is None or public is None or not _creatable(private, public, workspace_root):
        configured_keypair(private, public)


def _file_signer(spec: KeySpec, workspace_root: Path) -> FileSigner:
    """The configured key file pair; created if both halves are absent under the workspace; else the workspace's."""
    private, public = spec.private_key, spec.public_key
    if private is not None and public is not None and _creatable(private, public, workspace_root):
        pair = ensure_keypair_at(private, public)
    else:
        pair = configured_keypair(private, public) or ensure_keypair(workspace_root / "keys")
    return FileSigner(pair.private_key, pair.public_key, pair.key_id)


def _creatable(private: Path, public: Path, workspace_root: Path) -> bool:
    root = workspace_root.resolve()
    return all(not p.exists() and p.resolve().is_relative_to(root) for p in (private, public))


def _required_public(spec: KeySpec, half: str) -> Path:
    if spec.public_key is None:
        raise BadInputError(
            f"sign.{half} is set but sign.public_key is not: verification needs the public half"
        )
    return spec.public_key


def _pairs(actual: ec.EllipticCurvePublicKey, public_key: Path, what: str) -> None:
    if key_id(actual) != key_id(load_public_key(public_key)):
        raise BadInputError(f"{what} does not pair with the public key {public_key}")


def _secret_pem(name: str) -> bytes:
    """The PEM text of a Prefect ``Secret`` block (read through the Prefect API)."""
    from prefect.blocks.system import Secret

    try:
        block = Secret.load(name, _sync=True)  # type: ignore[call-arg]  # async_dispatch's keyword
        value = cast(Secret[Any], block).get()
    except ValueError:
        raise BadInputError(
            f"no Prefect Secret block {name!r}: create it with"
            f" `Secret(value=open('key.pem').read()).save({name!r})`"
        ) from None
    if not isinstance(value, str):
        raise BadInputError(f"the Prefect Secret block {name!r} does not hold PEM text")
    return value.encode()


def _init_token(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(
        prog="python -m attestflow.signers init-token",
        description="Create a SoftHSM2/PKCS#11 token and an EC P-256 key pair generated inside it; export the"
        f" public key. The user PIN comes from ${pkcs11.PIN_ENV}.",
    )
    parser.add_argument("--label", required=True, help="the token's label")
    parser.add_argument("--object", required=True, help="the key pair's label")
    parser.add_argument("--public-key", required=True, type=Path, help="where to write the public key PEM")
    parser.add_argument(
        "--so-pin-env",
        default="ATTESTFLOW_PKCS11_SO_PIN",
        help="variable holding the SO PIN (new token only)",
    )
    parser.add_argument(
        "--softhsm-dir",
        type=Path,
        default=Path(".attestflow/softhsm"),
        help="where the SoftHSM2 config and tokens go when $SOFTHSM2_CONF is unset",
    )
    args = parser.parse_args(argv)
    written = "SOFTHSM2_CONF" not in os.environ
    if written:
        os.environ["SOFTHSM2_CONF"] = str(pkcs11.write_softhsm_conf(args.softhsm_dir).resolve())
    token_key = pkcs11.TokenKey(args.label, args.object)
    public = pkcs11.init_token(token_key, os.environ.get(args.so_pin_env))
    args.public_key.parent.mkdir(parents=True, exist_ok=True)
    args.public_key.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    done = f"{token_key.uri}: public key {key_id(public)} written to {args.public_key}"
    if written:
        done += (
            f"\ntokens kept by SOFTHSM2_CONF={os.environ['SOFTHSM2_CONF']} (a workspace's softhsm/softhsm2.conf is"
            " used when SOFTHSM2_CONF is unset; elsewhere export it)"
        )
    return done


def main(argv: list[str] | None = None) -> int:
    """``init-token``: exit 0 with what was made, 2 with one line on bad input."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "init-token":
        print(
            "usage: python -m attestflow.signers init-token --label L --object O --public-key PATH",
            file=sys.stderr,
        )
        return 2
    import PyKCS11

    try:
        print(_init_token(argv[1:]))
    except (BadInputError, PyKCS11.PyKCS11Error) as e:
        print(f"error: {pkcs11.hide_pin(str(e))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
