"""Signed statements: what attestflow signs verifies with securesystemslib alone, and tampering is caught."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestflow.dsse import EnvelopeError, dsse_sign, dsse_verify, statement
from attestflow.keys import key_id

SUBJECT = [{"name": "model.onnx", "digest": {"sha256": "ab" * 32}}]


def _statement() -> dict[str, Any]:
    return statement(SUBJECT, "https://example.test/predicate/v1", {"result": "PASSED"})


def test_a_signed_statement_verifies_with_securesystemslib_and_parses_with_the_in_toto_bindings() -> None:
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    key = ec.generate_private_key(ec.SECP256R1())
    envelope = dsse_sign(_statement(), key)
    public = key.public_key()
    trusted = SSlibKey.from_crypto(public, keyid=key_id(public))
    parsed = Envelope.from_dict(json.loads(json.dumps(envelope)))
    assert list(parsed.verify([trusted], 1)) == [key_id(public)]
    stmt = json_format.ParseDict(json.loads(parsed.payload), statement_pb2.Statement())
    assert stmt.subject[0].digest["sha256"] == "ab" * 32
    assert stmt.predicate_type == "https://example.test/predicate/v1"


def test_an_envelope_signed_by_securesystemslib_directly_verifies_here() -> None:
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner, SSlibKey

    key = ec.generate_private_key(ec.SECP256R1())
    payload = json.dumps(_statement()).encode()
    env = Envelope(payload=payload, payload_type="application/vnd.in-toto+json", signatures={})
    env.sign(CryptoSigner(key, SSlibKey.from_crypto(key.public_key(), keyid=key_id(key.public_key()))))
    assert dsse_verify(env.to_dict(), key.public_key())["predicate"] == {"result": "PASSED"}


def test_an_edited_payload_does_not_verify() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    envelope = dsse_sign(_statement(), key)
    stmt = json.loads(base64.b64decode(envelope["payload"]))
    stmt["predicate"]["result"] = "FAILED"
    envelope["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    with pytest.raises(EnvelopeError, match="no signature"):
        dsse_verify(envelope, key.public_key())


def test_a_statement_signed_by_another_key_does_not_verify_even_under_the_trusted_key_id() -> None:
    trusted = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    envelope = dsse_sign(_statement(), other)
    envelope["signatures"][0]["keyid"] = key_id(trusted.public_key())
    with pytest.raises(EnvelopeError, match="no signature"):
        dsse_verify(envelope, trusted.public_key())


@pytest.mark.parametrize(
    "envelope",
    [{}, {"payload": "!!", "payloadType": "application/vnd.in-toto+json", "signatures": []}, {"payload": 1}],
)
def test_a_malformed_envelope_is_an_envelope_error_not_a_crash(envelope: dict[str, Any]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(EnvelopeError):
        dsse_verify(envelope, key.public_key())


def test_a_payload_that_is_not_an_in_toto_statement_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    envelope = dsse_sign({"_type": "something-else"}, key)
    with pytest.raises(EnvelopeError, match="not an in-toto Statement"):
        dsse_verify(envelope, key.public_key())


def test_verifying_leaves_the_callers_envelope_as_it_was() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    envelope = dsse_sign(_statement(), key)
    before = json.loads(json.dumps(envelope))
    dsse_verify(envelope, key.public_key())
    assert envelope == before
