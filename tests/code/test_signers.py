"""The three homes of a signing key (a PEM file, a Prefect Secret block, a PKCS#11 token) sign alike.

Every signature is checked with the public key alone by code attestflow did not write:
securesystemslib for DSSE envelopes, the upstream ``model_signing`` command line for bundles.
The token is SoftHSM2 in a temp folder (`tests.softhsm`).
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from attestflow.audit import AuditLog
from attestflow.bundle import MODEL, SIGNATURE
from attestflow.dsse import dsse_verify, statement
from attestflow.errors import BadInputError, exit_code_of
from attestflow.keys import ensure_keypair, key_id, load_public_key
from attestflow.settings import KeySpec
from attestflow.signers import check_key, signer_for
from tests.softhsm import OBJECT, PIN, TOKEN, init_token, upstream_verify

KINDS = ["file", "secret", "pkcs11"]
BLOCK_NAME = "absent-block"
"""A Secret block name no test saves."""


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    """A temporary Prefect API for the Secret blocks (its own database, gone afterwards)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _secret_block(pem_file: Path) -> str:
    from prefect.blocks.system import Secret

    name = f"signing-key-{uuid.uuid4().hex[:8]}"
    Secret(value=pem_file.read_text()).save(name)
    return name


@pytest.fixture
def other_public(tmp_path: Path) -> Path:
    """The public half of a key that signed nothing here."""
    return ensure_keypair(tmp_path / "other").public_key


def _spec(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> KeySpec:
    if kind == "pkcs11":
        uri, public = request.getfixturevalue("softhsm_key")
        return KeySpec(pkcs11_uri=uri, public_key=public)
    pair = ensure_keypair(tmp_path / "keys")
    if kind == "secret":
        request.getfixturevalue("prefect_api")
        return KeySpec(secret_block=_secret_block(pair.private_key), public_key=pair.public_key)
    return KeySpec(private_key=pair.private_key, public_key=pair.public_key)


def _stmt() -> dict[str, Any]:
    return statement([{"name": "model.onnx", "digest": {"sha256": "ab" * 32}}], "https://example.test/v1", {})


def _sslib_verifies(envelope: dict[str, Any], public: Path) -> bool:
    """securesystemslib's own verdict on the envelope, with the public key alone."""
    key = SSlibKey.from_crypto(load_public_key(public), keyid=key_id(load_public_key(public)))
    try:
        Envelope.from_dict(copy.deepcopy(envelope)).verify([key], 1)
    except VerificationError:
        return False
    return True


def _bundle(folder: Path) -> Path:
    (folder / "attestation").mkdir(parents=True)
    (folder / MODEL).write_bytes(b"onnx bytes")
    (folder / "attestation" / "metrics.json").write_text("{}")
    return folder


@pytest.mark.parametrize("kind", KINDS)
def test_each_signer_makes_envelopes_securesystemslib_verifies_with_its_public_key_alone(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, other_public: Path
) -> None:
    spec = _spec(kind, tmp_path, request)
    signer = signer_for(spec, tmp_path / "ws")
    assert signer.key_id == key_id(load_public_key(spec.public_key or Path()))
    envelope = signer.sign_dsse(_stmt())
    assert _sslib_verifies(envelope, signer.public_key)
    assert dsse_verify(envelope, load_public_key(signer.public_key)) == _stmt()
    assert not _sslib_verifies(envelope, other_public)


@pytest.mark.parametrize("kind", KINDS)
def test_each_signer_makes_bundle_signatures_the_upstream_cli_verifies_and_another_key_does_not(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, other_public: Path
) -> None:
    signer = signer_for(_spec(kind, tmp_path, request), tmp_path / "ws")
    bundle = _bundle(tmp_path / "bundle")
    signer.sign_bundle(bundle)
    verified = upstream_verify(bundle, signer.public_key)
    assert verified.returncode == 0 and "Verification succeeded" in verified.stdout, verified
    refused = upstream_verify(bundle, other_public)
    assert refused.returncode != 0 and "Key mismatch" in refused.stdout + refused.stderr, refused


def test_the_signers_describe_where_the_key_lives(tmp_path: Path, softhsm_key: tuple[str, Path]) -> None:
    uri, public = softhsm_key
    assert signer_for(KeySpec(pkcs11_uri=uri, public_key=public), tmp_path).describe() == uri
    assert signer_for(KeySpec(), tmp_path).describe() == "file"


def test_the_token_never_reveals_the_private_key(softhsm_key: tuple[str, Path]) -> None:
    import PyKCS11

    from attestflow import pkcs11

    token_key = pkcs11.parse_uri(softhsm_key[0])
    with pkcs11.token_session(token_key) as session:
        private = pkcs11.find_object(session, PyKCS11.CKO_PRIVATE_KEY, OBJECT)
        flags = session.getAttributeValue(
            private,
            [
                PyKCS11.CKA_EXTRACTABLE,
                PyKCS11.CKA_SENSITIVE,
                PyKCS11.CKA_NEVER_EXTRACTABLE,
                PyKCS11.CKA_LOCAL,
            ],
        )
        assert flags == [False, True, True, True]  # generated inside the token, never extractable
        template = PyKCS11.LowLevel.ckattrlist(1)
        template[0].SetType(PyKCS11.CKA_VALUE)
        refused = session.lib.C_GetAttributeValue(
            session.session, private, template
        )  # C_GetAttributeValue as is
        assert refused == PyKCS11.CKR_ATTRIBUTE_SENSITIVE
        assert session.getAttributeValue(private, [PyKCS11.CKA_VALUE]) == [None]


def _refusal(spec: KeySpec, tmp_path: Path) -> str:
    with pytest.raises(BadInputError) as refused:
        signer_for(spec, tmp_path / "ws")
    assert exit_code_of(refused.value) == 2
    message = str(refused.value)
    assert "\n" not in message and PIN not in message
    return message


def test_a_wrong_or_missing_pin_is_refused_in_one_line(
    softhsm_key: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, public = softhsm_key
    monkeypatch.setenv("ATTESTFLOW_PKCS11_PIN", "not-the-pin")
    message = _refusal(KeySpec(pkcs11_uri=uri, public_key=public), tmp_path)
    assert "PIN in $ATTESTFLOW_PKCS11_PIN is wrong" in message and "not-the-pin" not in message
    monkeypatch.delenv("ATTESTFLOW_PKCS11_PIN")
    assert "set $ATTESTFLOW_PKCS11_PIN" in _refusal(KeySpec(pkcs11_uri=uri, public_key=public), tmp_path)


def test_a_missing_token_or_object_is_refused_saying_how_to_create_it(
    softhsm_key: tuple[str, Path], tmp_path: Path
) -> None:
    _, public = softhsm_key
    no_object = _refusal(
        KeySpec(pkcs11_uri=f"pkcs11:token={TOKEN};object=nothing", public_key=public), tmp_path
    )
    assert "no key pair 'nothing'" in no_object and "init-token --label attestflow-test" in no_object
    no_token = _refusal(
        KeySpec(pkcs11_uri=f"pkcs11:token=absent;object={OBJECT}", public_key=public), tmp_path
    )
    assert "no PKCS#11 token labelled 'absent'" in no_token and "init-token --label absent" in no_token


def test_a_public_key_that_does_not_pair_is_refused_before_anything_is_signed(
    softhsm_key: tuple[str, Path], tmp_path: Path, other_public: Path
) -> None:
    uri, _ = softhsm_key
    assert "does not pair with the public key" in _refusal(
        KeySpec(pkcs11_uri=uri, public_key=other_public), tmp_path
    )
    pair = ensure_keypair(tmp_path / "mine")
    refused = _refusal(KeySpec(private_key=pair.private_key, public_key=other_public), tmp_path)
    assert "are not one key pair" in refused


def test_a_token_or_secret_without_its_public_key_is_refused(tmp_path: Path) -> None:
    uri = "pkcs11:token=t;object=o"
    assert "sign.public_key is not" in _refusal(KeySpec(pkcs11_uri=uri), tmp_path)
    with pytest.raises(BadInputError, match=r"sign\.secret_block is set but sign\.public_key is not"):
        check_key(KeySpec(secret_block=BLOCK_NAME), tmp_path)
    with pytest.raises(ValidationError, match="query attributes"):  # refused as the config loads
        KeySpec(pkcs11_uri=uri + "?module-path=/x.so", public_key=tmp_path / "p.pem")


def test_a_secret_block_that_is_missing_or_does_not_pair_is_refused(
    prefect_api: None, tmp_path: Path, other_public: Path
) -> None:
    pair = ensure_keypair(tmp_path / "keys")
    assert f"no Prefect Secret block {BLOCK_NAME!r}" in _refusal(
        KeySpec(secret_block=BLOCK_NAME, public_key=pair.public_key), tmp_path
    )
    name = _secret_block(pair.private_key)
    assert "does not pair with the public key" in _refusal(
        KeySpec(secret_block=name, public_key=other_public), tmp_path
    )


def test_key_files_under_the_workspace_are_created_on_first_use_and_elsewhere_refused(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    inside = KeySpec(private_key=ws / "envs/dev/keys/k.pem", public_key=ws / "envs/dev/keys/k.pub.pem")
    signer = signer_for(inside, ws)
    assert (ws / "envs/dev/keys/k.pem").stat().st_mode & 0o077 == 0
    assert signer.key_id == key_id(load_public_key(ws / "envs/dev/keys/k.pub.pem"))
    outside = KeySpec(private_key=tmp_path / "k.pem", public_key=tmp_path / "k.pub.pem")
    with pytest.raises(BadInputError, match="cannot read private key"):
        check_key(outside, ws)
    assert "cannot read private key" in _refusal(outside, tmp_path)
    assert not (tmp_path / "k.pem").exists()


def test_the_pin_appears_in_no_envelope_signature_log_or_audit_entry(
    softhsm_key: tuple[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri, public = softhsm_key
    spec = KeySpec(pkcs11_uri=uri, public_key=public)
    caplog.set_level(logging.DEBUG)
    signer = signer_for(spec, tmp_path)
    envelope = signer.sign_dsse(_stmt())
    bundle = _bundle(tmp_path / "bundle")
    signer.sign_bundle(bundle)
    log = AuditLog.of(tmp_path / "ws", key=spec)
    log.append("promotion", model="m", version="1", signer=signer.describe())
    assert log.verify()[0]
    written = [
        json.dumps(envelope),
        (bundle / SIGNATURE).read_text(),
        log.path.read_text(),
        log.head_path.read_text(),
    ]
    assert all(PIN not in text for text in [*written, caplog.text, signer.describe(), repr(signer)])


def test_init_token_is_idempotent_and_refuses_a_wrong_pin_with_exit_2(
    softhsm_key: tuple[str, Path], tmp_path: Path
) -> None:
    _, public = softhsm_key
    again = init_token(TOKEN, OBJECT, tmp_path / "again.pub.pem", {})
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.pub.pem").read_bytes() == public.read_bytes()
    wrong = init_token(TOKEN, OBJECT, tmp_path / "x.pem", {"ATTESTFLOW_PKCS11_PIN": "0000"})
    assert wrong.returncode == 2 and wrong.stderr.strip().count("\n") == 0 and "is wrong" in wrong.stderr
    new_token = init_token("no-so-pin", OBJECT, tmp_path / "y.pem", {})
    assert new_token.returncode == 2 and "set its SO PIN" in new_token.stderr


def test_redaction_keeps_a_pkcs11_uris_labels_and_masks_its_query() -> None:
    from attestflow.redact import redact

    shown = "pkcs11:token=attestflow-prod;object=prod-signing"
    assert redact(f"signed by {shown}") == f"signed by {shown}"
    assert redact(f"{shown}?module-path=/m.so&pin-value=123456 token=abc") == f"{shown}?*** token=***"
