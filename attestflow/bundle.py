"""The release bundle's layout: what is signed, what is evidence about it, and its digest.

A bundle is the folder that is registered and deployed: ``model.onnx`` plus ``attestation/``
(config, data manifest, metrics, and the signature, provenance and public key). The signing
stage writes it and every verifier reads it, so the layout is defined once, here.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from attestflow.digests import Digest, file_digest, json_digest

MODEL = "model.onnx"
ATTESTATION = "attestation"
SIGNATURE = f"{ATTESTATION}/model.sig"
PROVENANCE = f"{ATTESTATION}/provenance.dsse.json"
PUBLIC_KEY = f"{ATTESTATION}/signing-key.pub.pem"
UNSIGNED = (SIGNATURE, PROVENANCE, PUBLIC_KEY)
"""Files of the bundle that the model signature does not cover (they are about it)."""


def signed_files(bundle_dir: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file present that the signature is meant to cover."""
    out = {}
    for p in sorted(bundle_dir.rglob("*")):
        rel = p.relative_to(bundle_dir).as_posix()
        if p.is_file() and rel not in UNSIGNED and (rel == MODEL or rel.startswith(ATTESTATION + "/")):
            out[rel] = file_digest(p).value
    return out


def bundle_digest(files: dict[str, str]) -> Digest:
    """The bundle's digest: SHA-256 of its signed-file manifest as canonical JSON."""
    return Digest("sha256", json_digest(files).value, "canonical JSON of {path: sha256} of the signed files")


def hashing_config(bundle_dir: Path) -> Any:
    """model-signing's hashing settings for a bundle: every file but the attestation ones."""
    import model_signing

    return model_signing.hashing.Config().set_ignored_paths(paths=[bundle_dir / u for u in UNSIGNED])


def signature_manifest(signature: Path) -> dict[str, str]:
    """Relative path -> SHA-256 as listed inside a model-signing signature (unverified)."""
    bundle = json.loads(signature.read_text())
    payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return {r["name"]: r["digest"] for r in payload["predicate"]["resources"]}
