"""In-toto statements in DSSE envelopes, signed and verified with the reference implementation.

Every piece of signed evidence attestflow writes (the SLSA provenance, the gate verdict, the
approval, the canary's verdict) is an in-toto Statement v1 in a DSSE envelope. Signing and
verification go through securesystemslib's `Envelope` and `CryptoSigner`, the library the
in-toto and TUF projects use, rather than a hand-written pre-authentication encoding, so that
what attestflow accepts is what any other DSSE verifier accepts. The key id in each signature
is ``sha256:`` of the public key's DER (see `attestflow.keys.key_id`).

Specs: https://github.com/secure-systems-lab/dsse/blob/master/protocol.md,
https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md
"""

from __future__ import annotations

import copy
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"


class EnvelopeError(Exception):
    """A DSSE envelope that is malformed or whose signature does not verify."""


def statement(
    subjects: list[dict[str, Any]], predicate_type: str, predicate: dict[str, Any]
) -> dict[str, Any]:
    """An in-toto Statement v1 about `subjects` (ResourceDescriptors with a digest each)."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def sslib_key(public_key: ec.EllipticCurvePublicKey) -> Any:
    """securesystemslib's key for `public_key`, its key id attestflow's (`attestflow.keys.key_id`)."""
    from securesystemslib.signer import SSlibKey

    from attestflow.keys import key_id

    return SSlibKey.from_crypto(public_key, keyid=key_id(public_key))


def dsse_sign(stmt: dict[str, Any], private_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """A DSSE envelope over the statement's canonical JSON, signed with the EC key (ECDSA/SHA-256)."""
    from securesystemslib.signer import CryptoSigner

    return dsse_sign_with(stmt, CryptoSigner(private_key, sslib_key(private_key.public_key())))


def dsse_sign_with(stmt: dict[str, Any], signer: Any) -> dict[str, Any]:
    """A DSSE envelope over the statement's canonical JSON, signed by a securesystemslib `Signer`."""
    from securesystemslib.dsse import Envelope

    payload = json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(signer)
    return dict(envelope.to_dict())


def dsse_verify(envelope: dict[str, Any], public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """The statement inside `envelope` if a signature by `public_key` verifies; else `EnvelopeError`."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError

    try:
        parsed = Envelope.from_dict(copy.deepcopy(dict(envelope)))  # from_dict empties the signatures
    except Exception as e:  # securesystemslib raises KeyError, TypeError, binascii.Error and others
        raise EnvelopeError(f"malformed DSSE envelope: {type(e).__name__}") from None
    if parsed.payload_type != PAYLOAD_TYPE:
        raise EnvelopeError(f"unexpected payload type {parsed.payload_type!r}")
    try:
        parsed.verify([sslib_key(public_key)], 1)
    except VerificationError:
        raise EnvelopeError("no signature in the envelope verifies with the trusted public key") from None
    try:
        stmt = json.loads(parsed.payload)
    except ValueError:
        raise EnvelopeError("the signed payload is not JSON") from None
    if not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT_TYPE:
        raise EnvelopeError("the signed payload is not an in-toto Statement v1")
    return stmt
