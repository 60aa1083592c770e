"""A signing key inside a PKCS#11 token (SoftHSM2 in tests and the demo, an HSM in production).

The key pair is generated inside the token, its private half sensitive and not extractable:
attestflow only ever hands the token a digest to sign, through PyKCS11 (the library that
model-signing's own PKCS#11 signer uses, so one binding talks to the token). The PIN is read
from ``$ATTESTFLOW_PKCS11_PIN`` when a session opens and goes nowhere else: never into a URI
that is shown, a message, a log line or the provenance. The module is
``$ATTESTFLOW_PKCS11_MODULE`` (default SoftHSM2's). SoftHSM2 finds its tokens through
``$SOFTHSM2_CONF``; unset, a workspace's ``softhsm/softhsm2.conf`` (written by
``python -m attestflow.signers init-token``) is used when it exists.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from attestflow.errors import BadInputError
from attestflow.redact import remember

PIN_ENV = "ATTESTFLOW_PKCS11_PIN"
MODULE_ENV = "ATTESTFLOW_PKCS11_MODULE"
DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
P256_OID_DER = bytes.fromhex("06082a8648ce3d030107")
"""CKA_EC_PARAMS of NIST P-256 (the named curve's object identifier, DER)."""
TOKEN_LOCK = threading.RLock()
"""Held while this process is logged in to a token: a PKCS#11 login is shared by all of a process's
sessions, so one thread's logout would end another's signing."""


@dataclass(frozen=True)
class TokenKey:
    """A key named by an RFC 7512 URI: the token's label and the key objects' label."""

    token: str
    object: str

    @property
    def uri(self) -> str:
        """``pkcs11:token=..;object=..``: what provenance and logs show (never a PIN)."""
        return f"pkcs11:token={quote(self.token, safe='')};object={quote(self.object, safe='')}"

    def how_to_create(self) -> str:
        return (
            f"create it with `python -m attestflow.signers init-token --label {self.token}"
            f" --object {self.object} --public-key PUBLIC_KEY.pem`"
        )


def parse_uri(uri: str) -> TokenKey:
    """The token and object an RFC 7512 URI names; anything else in it is bad input."""
    if not uri.startswith("pkcs11:"):
        raise BadInputError(f"not a PKCS#11 URI (pkcs11:token=...;object=...): {uri!r}")
    path, _, query = uri[len("pkcs11:") :].partition("?")
    if query:
        raise BadInputError(
            f"the PKCS#11 URI {path!r} has query attributes; the PIN comes from ${PIN_ENV} and the"
            f" module from ${MODULE_ENV} only"
        )
    attributes: dict[str, str] = {}
    for part in filter(None, path.split(";")):
        name, sep, value = part.partition("=")
        if not sep:
            raise BadInputError(f"malformed PKCS#11 URI attribute {name!r}")
        attributes[name] = unquote(value)
    if not attributes.get("token") or not attributes.get("object"):
        raise BadInputError("a PKCS#11 URI must name the token and the object: pkcs11:token=...;object=...")
    return TokenKey(attributes["token"], attributes["object"])


def module_path() -> str:
    return os.environ.get(MODULE_ENV) or DEFAULT_MODULE


def use_workspace_softhsm(workspace_root: Path) -> None:
    """Point SoftHSM2 at the workspace's token folder, when ``$SOFTHSM2_CONF`` is unset and one exists."""
    conf = workspace_root / "softhsm" / "softhsm2.conf"
    if "SOFTHSM2_CONF" not in os.environ and conf.is_file():
        os.environ["SOFTHSM2_CONF"] = str(conf)


def _pin() -> str:
    """The user PIN, which `attestflow.redact` masks from here on wherever it would be written."""
    pin = os.environ.get(PIN_ENV)
    if not pin:
        raise BadInputError(f"set ${PIN_ENV} to the PIN of the PKCS#11 token (it is never read from config)")
    remember(pin)
    return pin


def _label(raw: str) -> str:
    return raw.rstrip(" \x00")


def _library() -> Any:
    import PyKCS11

    lib = PyKCS11.PyKCS11Lib()
    try:
        lib.load(module_path())
    except PyKCS11.PyKCS11Error as e:
        raise BadInputError(f"cannot load the PKCS#11 module {module_path()} (${MODULE_ENV}): {e}") from None
    return lib


def _slot(lib: Any, token: str) -> int | None:
    for slot in lib.getSlotList(tokenPresent=True):
        if _label(lib.getTokenInfo(slot).label) == token:
            return int(slot)
    return None


def _login(session: Any, pin: str, key: TokenKey, user: int | None = None) -> None:
    import PyKCS11

    try:
        session.login(pin, PyKCS11.CKU_USER if user is None else user)
    except PyKCS11.PyKCS11Error as e:
        if e.value == PyKCS11.CKR_USER_ALREADY_LOGGED_IN:
            return
        if e.value == PyKCS11.CKR_PIN_INCORRECT:
            raise BadInputError(
                f"the PIN in ${PIN_ENV} is wrong for the PKCS#11 token {key.token!r}"
            ) from None
        if e.value == PyKCS11.CKR_PIN_LOCKED:
            raise BadInputError(f"the PKCS#11 token {key.token!r} is locked (too many wrong PINs)") from None
        raise BadInputError(f"cannot log in to the PKCS#11 token {key.token!r}: {e}") from None


@contextmanager
def token_session(key: TokenKey, *, write: bool = False) -> Iterator[Any]:
    """A logged-in session on the key's token, logged out and closed afterwards."""
    import PyKCS11

    pin = _pin()
    with TOKEN_LOCK:
        lib = _library()
        slot = _slot(lib, key.token)
        if slot is None:
            raise BadInputError(
                f"no PKCS#11 token labelled {key.token!r} in {module_path()}: {key.how_to_create()}"
            )
        flags = PyKCS11.CKF_SERIAL_SESSION | (PyKCS11.CKF_RW_SESSION if write else 0)
        session = lib.openSession(slot, flags)
        try:
            _login(session, pin, key)
            yield session
        finally:
            with suppress(PyKCS11.PyKCS11Error):
                session.logout()
            session.closeSession()


def find_object(session: Any, kind: int, label: str) -> Any | None:
    """The token object of class `kind` labelled `label`, if any."""
    import PyKCS11

    found = session.findObjects([(PyKCS11.CKA_CLASS, kind), (PyKCS11.CKA_LABEL, label)])
    return found[0] if found else None


def _point(ec_point: bytes) -> bytes:
    """The uncompressed point inside CKA_EC_POINT (a DER OCTET STRING, or bare as some tokens give it)."""
    if len(ec_point) > 2 and ec_point[0] == 0x04 and ec_point[1] == len(ec_point) - 2:
        return ec_point[2:]
    return ec_point


def public_key_in(session: Any, key: TokenKey) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of the key pair; a token without it is bad input."""
    import PyKCS11

    private = find_object(session, PyKCS11.CKO_PRIVATE_KEY, key.object)
    public = find_object(session, PyKCS11.CKO_PUBLIC_KEY, key.object)
    if private is None or public is None:
        raise BadInputError(
            f"no key pair {key.object!r} in the PKCS#11 token {key.token!r}: {key.how_to_create()}"
        )
    params, point = session.getAttributeValue(public, [PyKCS11.CKA_EC_PARAMS, PyKCS11.CKA_EC_POINT])
    if bytes(params) != P256_OID_DER:
        raise BadInputError(f"the key {key.object!r} in token {key.token!r} is not an EC P-256 key")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _point(bytes(point)))


def sign_digest(session: Any, key: TokenKey, digest: bytes) -> bytes:
    """The token's ECDSA signature (DER) of a SHA-256 `digest`, by the private key of `key`."""
    import PyKCS11

    private = find_object(session, PyKCS11.CKO_PRIVATE_KEY, key.object)
    if private is None:
        raise BadInputError(
            f"no key pair {key.object!r} in the PKCS#11 token {key.token!r}: {key.how_to_create()}"
        )
    raw = bytes(session.sign(private, digest, PyKCS11.Mechanism(PyKCS11.CKM_ECDSA, None)))
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


def signed_with_token(key: TokenKey, payload: bytes) -> bytes:
    """ECDSA/SHA-256 signature (DER) of `payload` made inside the token."""
    with token_session(key) as session:
        return sign_digest(session, key, hashlib.sha256(payload).digest())


def bundle_signer_uri(key: TokenKey) -> str:
    """The URI model-signing's PKCS#11 signer takes: with the module and the PIN (never show it)."""
    return f"{key.uri}?module-path={quote(module_path(), safe='/')}&pin-value={quote(_pin(), safe='')}"


def hide_pin(text: str) -> str:
    """`text` with the PIN (raw or URI-encoded) replaced, for an error that quotes a library's message."""
    pin = os.environ.get(PIN_ENV)
    for form in {pin, quote(pin, safe="")} if pin else ():
        text = text.replace(form, "***")
    return text


def write_softhsm_conf(folder: Path) -> Path:
    """A SoftHSM2 config keeping tokens in ``folder/tokens`` (0700), unless one is there already."""
    conf = folder / "softhsm2.conf"
    if not conf.is_file():
        tokens = folder / "tokens"
        tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf.write_text(
            f"directories.tokendir = {tokens.resolve()}\nobjectstore.backend = file\nlog.level = ERROR\n"
        )
    return conf


def _create_token(lib: Any, key: TokenKey, so_pin: str, pin: str) -> int:
    """Initialise a free slot's token as `key.token` with its SO and user PINs; its slot."""
    import PyKCS11

    free = [
        s
        for s in lib.getSlotList(tokenPresent=True)
        if not lib.getTokenInfo(s).flags & PyKCS11.CKF_TOKEN_INITIALIZED
    ]
    if not free:
        raise BadInputError(f"no free PKCS#11 slot in {module_path()} to create the token {key.token!r}")
    lib.initToken(free[0], so_pin, key.token.ljust(32))  # space-padded, as PKCS#11 labels are
    slot = _slot(lib, key.token)
    if slot is None:
        raise BadInputError(f"the PKCS#11 token {key.token!r} was initialised but cannot be found")
    session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    try:
        _login(session, so_pin, key, PyKCS11.CKU_SO)
        session.initPin(pin)
        session.logout()
    finally:
        session.closeSession()
    return slot


def _generate_key_pair(session: Any, key: TokenKey) -> None:
    """An EC P-256 key pair generated inside the token: the private half sensitive and never extractable."""
    import PyKCS11

    ident = hashlib.sha256(key.object.encode()).digest()[:8]
    common = [
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_EC),
        (PyKCS11.CKA_TOKEN, True),
        (PyKCS11.CKA_LABEL, key.object),
        (PyKCS11.CKA_ID, ident),
    ]
    public = [
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY),
        *common,
        (PyKCS11.CKA_PRIVATE, False),
        (PyKCS11.CKA_VERIFY, True),
        (PyKCS11.CKA_EC_PARAMS, P256_OID_DER),
    ]
    private = [
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY),
        *common,
        (PyKCS11.CKA_PRIVATE, True),
        (PyKCS11.CKA_SENSITIVE, True),
        (PyKCS11.CKA_EXTRACTABLE, False),
        (PyKCS11.CKA_SIGN, True),
    ]
    session.generateKeyPair(public, private, PyKCS11.Mechanism(PyKCS11.CKM_EC_KEY_PAIR_GEN, None))


def init_token(key: TokenKey, so_pin: str | None) -> ec.EllipticCurvePublicKey:
    """The token (created if absent, with `so_pin`) and its key pair (generated inside it if absent); its public key."""
    pin = _pin()
    lib = _library()
    if _slot(lib, key.token) is None:
        if not so_pin:
            raise BadInputError(
                f"the PKCS#11 token {key.token!r} does not exist: set its SO PIN to create it"
            )
        _create_token(lib, key, so_pin, pin)
    del lib  # the session below loads the module again, seeing the new token
    import PyKCS11

    with token_session(key, write=True) as session:
        if find_object(session, PyKCS11.CKO_PRIVATE_KEY, key.object) is None:
            _generate_key_pair(session, key)
        return public_key_in(session, key)
