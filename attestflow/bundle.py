"""The release bundle's layout: what is signed, what is evidence about it, and its digest.

A bundle is the folder that is registered, downloaded and loaded: the complete MLflow model
(``MLmodel``, ``model.onnx``, environment files, input example) plus ``attestation/``
(config, data manifest, metrics, public key, provenance and the signature). The model
signature covers every file of it but itself, so that nothing a loader reads is unsigned;
``evidence/`` holds statements added after registration, each signed on its own (and
``environments/<env>/`` those of the environments it was promoted into), and MLflow
adds a label of its own that nothing loads (`MLFLOW_META`). The signing
stage writes the bundle and every verifier reads it, so the layout is defined once, here.

A verifier lists a bundle with ``lstat`` before it opens anything (`list_bundle`): a symlink,
a FIFO or a device in the folder is refused unopened, and a path named by a manifest is only
ever looked up among the plain files found, never opened as given.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attestflow.digests import Digest, file_digest, json_digest

MODEL = "model.onnx"
MLMODEL = "MLmodel"
ATTESTATION = "attestation"
EVIDENCE = "evidence"
"""Folder of separately signed statements attached after registration (not model-signed)."""
ENVIRONMENTS = "environments"
"""Folder of the statements each environment a version was promoted into signed with its own key
(``environments/<env>/``: the promotion, that environment's gate verdict, approval and canary)."""
MLFLOW_META = "registered_model_meta"
"""MLflow writes this label (model name and version) into a local registered folder whenever it
loads it through ``models:/``; nothing reads it back, so the signature leaves it out."""
SIGNATURE = f"{ATTESTATION}/model.sig"
PROVENANCE = f"{ATTESTATION}/provenance.dsse.json"
PUBLIC_KEY = f"{ATTESTATION}/signing-key.pub.pem"
ATTRIBUTIONS = f"{ATTESTATION}/attributions.json"
"""The explain stage's attributions of the exported model (global and for a few sampled rows)."""
AIBOM = f"{ATTESTATION}/aibom.cdx.json"
"""The AI bill of materials: CycloneDX 1.6 JSON (libraries, base model, dataset, the ONNX model with its modelCard)."""

_KINDS = {
    stat.S_IFLNK: "a symlink",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


@dataclass(frozen=True)
class Listing:
    """What a bundle folder holds, seen through ``lstat`` alone (nothing opened or followed)."""

    files: frozenset[str]
    """Relative POSIX paths of the plain files."""
    refused: tuple[str, ...]
    """One line per entry that is neither a plain file nor a folder, e.g. ``x is a FIFO``."""
    refused_paths: frozenset[str] = frozenset()
    """The relative paths of those entries."""


def list_bundle(folder: Path) -> Listing:
    """The plain files of `folder`, and every symlink or special file in it, refused unopened."""
    files: set[str] = set()
    refused: dict[str, str] = {}
    pending = [(folder, "")]
    while pending:
        here, prefix = pending.pop()
        with os.scandir(here) as entries:
            for entry in entries:
                rel = prefix + entry.name
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    pending.append((Path(entry.path), rel + "/"))
                elif stat.S_ISREG(mode):
                    files.add(rel)
                else:
                    refused[rel] = f"{rel} is {_KINDS.get(stat.S_IFMT(mode), 'not a plain file')}"
    return Listing(frozenset(files), tuple(sorted(refused.values())), frozenset(refused))


def outside_signature(rel: str) -> bool:
    """Whether the model signature leaves `rel` out: itself, ``evidence/``, ``environments/`` and MLflow's label."""
    return rel in (SIGNATURE, MLFLOW_META) or rel.startswith((EVIDENCE + "/", ENVIRONMENTS + "/"))


def unsafe_path(rel: str) -> bool:
    """Whether a path named by a manifest could point outside the bundle folder.

    Absolute paths, ``..`` and ``.`` components, empty names, backslashes and NULs are refused
    before anything is looked up (the path-traversal class fixed in model-transparency); with
    symlinks refused by `list_bundle`, what is left cannot resolve outside the folder.
    """
    return "\\" in rel or "\0" in rel or any(p in ("", ".", "..") for p in rel.split("/"))


def signed_files(bundle_dir: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of the files the bundle digest covers: the signed ones but the provenance."""
    listing = list_bundle(bundle_dir)
    inside = sorted(p for p in listing.refused_paths if not outside_signature(p))
    if inside:
        raise ValueError(f"not a bundle of plain files: {inside[0]} is not a plain file")
    return {
        rel: file_digest(bundle_dir / rel).value
        for rel in sorted(listing.files)
        if rel != PROVENANCE and not outside_signature(rel)
    }


def bundle_digest(files: dict[str, str]) -> Digest:
    """The bundle's digest: SHA-256 of its file manifest (`signed_files`) as canonical JSON."""
    return Digest(
        "sha256", json_digest(files).value, "canonical JSON of {path: sha256} of the bundle's files"
    )


def hashing_config(bundle_dir: Path) -> Any:
    """model-signing's hashing settings for a bundle: every file but those `outside_signature`."""
    import model_signing

    return model_signing.hashing.Config().set_ignored_paths(
        paths=[
            bundle_dir / SIGNATURE,
            bundle_dir / EVIDENCE,
            bundle_dir / ENVIRONMENTS,
            bundle_dir / MLFLOW_META,
        ]
    )


def sign_bundle(bundle_dir: Path, private_key: Path, signature: Path | None = None) -> None:
    """Sign every file of the bundle but those `outside_signature` with model-signing and a PEM key file."""
    import model_signing

    from attestflow.keys import key_password

    signing = model_signing.signing.Config().use_elliptic_key_signer(
        private_key=private_key,
        password=key_password(),  # type: ignore[arg-type]  # passed on to cryptography, which takes bytes
    )
    sign_bundle_with(bundle_dir, signing, signature)


def sign_bundle_with(bundle_dir: Path, signing: Any, signature: Path | None = None) -> None:
    """Sign every file of the bundle but those `outside_signature` with a model-signing signing config.

    The signature is written to `signature` (default: the bundle's own, `SIGNATURE`); another
    key's signature over the same files (an environment's, ``environments/<env>/model.sig``)
    is made with the same hashing settings, so each verifies over exactly the same files.
    """
    signing.set_hashing_config(hashing_config(bundle_dir)).sign(
        bundle_dir, signature or bundle_dir / SIGNATURE
    )


def signature_manifest(signature: Path) -> dict[str, str]:
    """Relative path -> SHA-256 as listed inside a model-signing signature (unverified)."""
    bundle = json.loads(signature.read_text())
    payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return {str(r["name"]): str(r["digest"]) for r in payload["predicate"]["resources"]}
