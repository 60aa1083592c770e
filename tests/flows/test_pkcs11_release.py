"""A release whose key lives in a PKCS#11 token (SoftHSM2) signs inside it and verifies with the public key."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from attestflow.audit import AuditLog
from attestflow.bundle import PROVENANCE
from attestflow.dsse import dsse_verify
from attestflow.keys import load_public_key
from flows.cli import app
from flows.release import release
from tests.conftest import ExampleRepo
from tests.softhsm import PIN, upstream_verify


def test_a_release_signed_by_a_token_key_verifies_and_names_the_token_but_never_the_pin(
    example_repo: ExampleRepo, softhsm_key: tuple[str, Path]
) -> None:
    uri, public = softhsm_key
    config = example_repo.write_config(sign={"pkcs11_uri": uri, "public_key": str(public)})
    summary = release(config_path=str(config))
    assert summary.promotion is not None, "a first release signed in the token should become the champion"

    done = CliRunner().invoke(
        app, ["verify", "models:/tiny-credit@champion", "--config", str(config), "--json"]
    )
    assert done.exit_code == 0, done.output
    assert all(c["ok"] for c in json.loads(done.output)["checks"])

    bundle = summary.signature.bundle_dir
    provenance = dsse_verify(json.loads((bundle / PROVENANCE).read_text()), load_public_key(public))
    (key,) = [b for b in provenance["predicate"]["runDetails"]["byproducts"] if b["name"] == "signing_key"]
    assert key["annotations"]["signer"] == uri
    upstream = upstream_verify(bundle, public)
    assert upstream.returncode == 0, upstream

    log = AuditLog.of(example_repo.workspace, public_key=public)
    assert log.verify()[0]
    written = [p.read_text(errors="replace") for p in summary.release_dir.rglob("*") if p.is_file()]
    assert all(PIN not in text for text in [*written, log.path.read_text(), log.head_path.read_text()])
