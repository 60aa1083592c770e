"""The audit log is append-only in effect: any edit, deletion or reordering is detected."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from attestflow.audit import AuditLog, champion_history
from attestflow.audit_head import signed_head
from attestflow.keys import ensure_keypair
from attestflow.settings import KeySpec
from attestflow.signers import signer_for


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    log = AuditLog.of(tmp_path)
    log.append("run_started", model="m", flow_run_id="r1")
    log.append("promotion", model="m", version="1", alias="champion", previous=None)
    log.append("promotion", model="m", version="2", alias="champion", previous="1")
    log.append("rollback", model="m", version="1", alias="champion", previous="2")
    return log


def test_an_untouched_log_verifies(log: AuditLog) -> None:
    assert log.verify() == (True, None, "4 entries, chain intact")


def test_editing_a_line_is_detected_at_the_next_line(log: AuditLog) -> None:
    lines = log.path.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["version"] = "9"
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    log.path.write_text("\n".join(lines) + "\n")
    ok, bad, reason = log.verify()
    assert not ok and bad == 3 and "does not chain" in reason


def test_deleting_a_line_is_detected(log: AuditLog) -> None:
    lines = log.path.read_text().splitlines()
    del lines[2]
    log.path.write_text("\n".join(lines) + "\n")
    assert log.verify()[:2] == (False, 3)


def test_deleting_the_last_line_is_detected_by_the_head(log: AuditLog) -> None:
    lines = log.path.read_text().splitlines()
    anchor = log.head()
    log.path.write_text("\n".join(lines[:-1]) + "\n")
    ok, bad, reason = log.verify()
    assert not ok and bad == 4 and "gone" in reason
    log.head_path.unlink()  # an attacker who also deletes the head is caught by an anchor kept elsewhere
    assert not log.verify(anchors=[anchor])[0]  # type: ignore[list-item]


def test_reordering_lines_is_detected(log: AuditLog) -> None:
    lines = log.path.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    log.path.write_text("\n".join(lines) + "\n")
    assert log.verify()[:2] == (False, 2)


def test_credentials_in_uris_are_never_written(tmp_path: Path) -> None:
    log = AuditLog.of(tmp_path)
    log.append("run_started", tracking_uri="https://alice:s3cret@mlflow.example.com/api?token=abc")
    text = log.path.read_text()
    assert "s3cret" not in text and "token=abc" not in text and "mlflow.example.com" in text


def test_concurrent_appends_keep_the_chain(tmp_path: Path) -> None:
    log = AuditLog.of(tmp_path)
    threads = [
        threading.Thread(target=lambda i=i: [log.append("e", n=i) for _ in range(10)]) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.verify()[0] and len(log.entries()) == 40


def test_champion_history_lists_alias_moves_only(log: AuditLog) -> None:
    assert [(e["event"], e["version"]) for e in champion_history(log.entries(), "m")] == [
        ("promotion", "1"),
        ("promotion", "2"),
        ("rollback", "1"),
    ]


def _rechained(lines: list[str]) -> list[str]:
    """The lines with `prev` and `seq` recomputed, as someone rewriting the log without the key would."""
    out: list[str] = []
    prev = "0" * 64
    for number, line in enumerate(lines, start=1):
        entry = {**json.loads(line), "prev": prev, "seq": number}
        out.append(json.dumps(entry, sort_keys=True, separators=(",", ":")))
        prev = hashlib.sha256(out[-1].encode()).hexdigest()
    return out


def test_a_deleted_head_file_is_named(log: AuditLog) -> None:
    log.head_path.unlink()
    ok, bad, reason = log.verify()
    assert not ok and bad == 4 and "signed head audit.jsonl.head is missing" in reason


def test_a_valid_looking_line_appended_after_the_head_is_named(log: AuditLog) -> None:
    lines = log.path.read_text().splitlines()
    forged = {**json.loads(lines[-1]), "event": "alias_adopted", "version": "2"}
    lines = _rechained([*lines, json.dumps(forged)])
    log.path.write_text("\n".join(lines) + "\n")
    ok, bad, reason = log.verify()
    assert not ok and bad == 5 and "come after the signed head" in reason


def test_a_log_and_head_rewritten_together_without_the_key_fail_the_signature(log: AuditLog) -> None:
    lines = log.path.read_text().splitlines()
    lines[3] = json.dumps({**json.loads(lines[3]), "version": "2"})
    lines = _rechained(lines)
    log.path.write_text("\n".join(lines) + "\n")
    digest = hashlib.sha256(lines[-1].encode()).hexdigest()
    anchor = {"seq": 4, "sha256": digest}
    # The old signature kept beside the new numbers: the head says what its signature does not.
    log.head_path.write_text(json.dumps({**json.loads(log.head_path.read_text()), **anchor}))
    ok, bad, reason = log.verify(anchors=[anchor])
    assert not ok and bad == 4 and "its signature covers" in reason
    # A head signed by a key of the attacker's own does not verify with the trusted key.
    other = ensure_keypair(log.path.parent / "attacker")
    attacker = signer_for(KeySpec(private_key=other.private_key, public_key=other.public_key), log.workspace)
    log.head_path.write_text(json.dumps(signed_head("audit.jsonl", 4, digest, attacker)))
    ok, bad, reason = log.verify(anchors=[anchor])
    assert not ok and "verifies with the trusted public key" in reason
    # An unsigned head in the old format is refused too.
    log.head_path.write_text(json.dumps(anchor))
    assert log.verify(anchors=[anchor])[2] == "the audit head is not signed"


def test_the_signed_head_verifies_with_securesystemslib_and_the_public_key_alone(log: AuditLog) -> None:
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    pem = (log.path.parent / "keys" / "signing-key.pub.pem").read_bytes()
    public = serialization.load_pem_public_key(pem)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = SSlibKey.from_crypto(public, keyid="sha256:" + hashlib.sha256(der).hexdigest())
    envelope = Envelope.from_dict(json.loads(log.head_path.read_text())["envelope"])
    envelope.verify([key], 1)
    stmt = json.loads(envelope.payload)
    last = log.path.read_text().splitlines()[-1]
    assert stmt["subject"][0]["digest"]["sha256"] == hashlib.sha256(last.encode()).hexdigest()
    assert stmt["predicate"] == {"seq": 4}


def test_a_registry_shared_by_two_audit_logs_holds_each_logs_head_against_its_own_log(tmp_path: Path) -> None:
    """One registry, two logs (two teams, or two environments): a model's mirrored head belongs to the
    log that audited its moves and is checked against that log only; a head with no log named counts
    for every log, as before logs were named."""
    from mlflow.tracking import MlflowClient

    from attestflow.audit import AUDIT_LOG_TAG, log_identity, registry_anchors

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri, uri)
    ours, theirs = AuditLog.of(tmp_path / "ours"), AuditLog.of(tmp_path / "theirs")
    for i in range(3):
        ours.append("probe", model="a", n=i)
    theirs.append("probe", model="b")
    for name, log in (("a", ours), ("b", theirs)):
        client.create_registered_model(name)
        head = log.head() or {}
        client.set_registered_model_tag(name, AUDIT_LOG_TAG, log_identity(log.store))
        client.set_registered_model_tag(name, "audit_head", f"{head['seq']}:{head['sha256']}")

    assert ours.verify(registry_anchors(uri, log_identity(ours.store)))[0]
    assert theirs.verify(registry_anchors(uri, log_identity(theirs.store)))[0]
    assert not ours.verify(registry_anchors(uri))[0]  # unfiltered, the other log's head names another line 1

    client.delete_registered_model_tag("b", AUDIT_LOG_TAG)  # a head mirrored before logs were named
    ok, line, reason = ours.verify(registry_anchors(uri, log_identity(ours.store)))
    assert not ok and line == 1 and "differs from the hash recorded" in reason
