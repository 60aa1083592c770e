"""SLSA v1 provenance as an in-toto Statement v1, signed in a DSSE envelope.

The statement says which files were built (subject), from what (resolved dependencies:
data snapshot, base checkpoint, code revision, lock file), with which parameters, by which
builder and run. It is signed with the release key over DSSE's pre-authentication encoding,
so that a verifier can check it offline with the public key alone.

Specs: https://in-toto.io/Statement/v1, https://slsa.dev/provenance/v1,
https://github.com/secure-systems-lab/dsse/blob/master/protocol.md
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "https://attestflow.dev/release-flow/v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def dsse_sign(statement: dict[str, Any], key: ec.EllipticCurvePrivateKey, keyid: str) -> dict[str, Any]:
    """A DSSE envelope over the statement's canonical JSON, signed with ECDSA P-256/SHA-256."""
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    sig = key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}],
    }


class EnvelopeError(Exception):
    """A DSSE envelope that is malformed or whose signature does not verify."""


def dsse_verify(envelope: dict[str, Any], key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """The statement inside `envelope` if a signature verifies with `key`; else `EnvelopeError`."""
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        payload_type = envelope["payloadType"]
        sigs = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
    except (KeyError, TypeError, ValueError) as e:
        raise EnvelopeError(f"malformed DSSE envelope: {e}") from None
    if payload_type != PAYLOAD_TYPE:
        raise EnvelopeError(f"unexpected payload type {payload_type!r}")
    for sig in sigs:
        try:
            key.verify(sig, pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return dict(json.loads(payload))
    raise EnvelopeError("no signature in the envelope verifies with the trusted public key")


def byproduct(statement: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The byproduct `name` (e.g. ``mlflow_run``, ``checkpoint``) of a provenance statement, if listed."""
    for item in statement.get("predicate", {}).get("runDetails", {}).get("byproducts", []):
        if item.get("name") == name:
            return dict(item)
    return None


def resource(name: str, digest: dict[str, str], uri: str | None = None, **annotations: Any) -> dict[str, Any]:
    """An in-toto ResourceDescriptor."""
    out: dict[str, Any] = {"name": name, "digest": digest}
    if uri:
        out["uri"] = uri
    if annotations:
        out["annotations"] = annotations
    return out


def statement(
    *,
    subjects: list[dict[str, Any]],
    external_parameters: dict[str, Any],
    internal_parameters: dict[str, Any],
    dependencies: list[dict[str, Any]],
    builder_id: str,
    invocation_id: str,
    started_on: str,
    finished_on: str,
    byproducts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An in-toto Statement v1 carrying a SLSA v1 provenance predicate."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external_parameters,
                "internalParameters": internal_parameters,
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": builder_id},
                "metadata": {
                    "invocationId": invocation_id,
                    "startedOn": started_on,
                    "finishedOn": finished_on,
                },
                "byproducts": byproducts or [],
            },
        },
    }
