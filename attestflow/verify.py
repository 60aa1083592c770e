"""Verification of a release bundle: what `attestflow verify`, promotion and loading all run.

A model is trusted only if every check holds: it is ONNX by content with allowed operators,
every signed file is present with its signed digest, the model signature and the provenance
signature verify with the trusted public key (never a key shipped inside the bundle), the
provenance names exactly these bytes, the registry's tags agree, and the data snapshot the
provenance names is still in the DVC remote with that md5.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from attestflow.bundle import (
    MODEL,
    PROVENANCE,
    SIGNATURE,
    bundle_digest,
    hashing_config,
    signature_manifest,
    signed_files,
)
from attestflow.digests import file_digest
from attestflow.dsse import EnvelopeError, dsse_verify
from attestflow.errors import BadInputError
from attestflow.keys import load_public_key
from attestflow.onnx_check import check_onnx
from attestflow.provenance import PREDICATE_TYPE, STATEMENT_TYPE
from attestflow.registry import Registry, parse_model_uri

ALLOWED_ONNX_DOMAINS = frozenset({"ai.onnx", "ai.onnx.ml"})


@dataclass(frozen=True)
class Check:
    """One verification check."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Verification:
    """Every check run on one model."""

    target: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]


def _check_format(bundle: Path) -> Check:
    if not (bundle / MODEL).is_file():
        return Check("format", False, f"{MODEL} is missing")
    result = check_onnx(bundle / MODEL, allowed_domains=ALLOWED_ONNX_DOMAINS)
    return Check(
        "format", result.ok, "; ".join(result.problems) or "ONNX by content, allowed operator domains"
    )


def _check_files(bundle: Path) -> Check:
    sig = bundle / SIGNATURE
    if not sig.is_file():
        return Check("files", False, f"{SIGNATURE} is missing")
    try:
        expected = signature_manifest(sig)
    except (ValueError, KeyError, TypeError):
        return Check("files", False, f"{SIGNATURE} is not a model-signing bundle")
    if MODEL not in expected:
        return Check("files", False, f"the signature does not cover {MODEL}")
    for rel, digest in sorted(expected.items()):
        path = bundle / rel
        if not path.is_file():
            return Check("files", False, f"{rel} is missing")
        if file_digest(path).value != digest:
            return Check("files", False, f"{rel} does not match its signed SHA-256")
    return Check("files", True, f"{len(expected)} signed files re-hashed, all match")


def _check_signature(bundle: Path, public_key: Path) -> Check:
    import model_signing

    try:
        (
            model_signing.verifying.Config()
            .use_elliptic_key_verifier(public_key=public_key)
            .set_hashing_config(hashing_config(bundle))
            .set_ignore_unsigned_files(True)
            .verify(bundle, bundle / SIGNATURE)
        )
    except Exception as e:  # model-signing raises ValueError and others
        return Check("signature", False, f"model-signing verification failed: {str(e).splitlines()[0][:200]}")
    return Check("signature", True, "model-signing signature verifies with the trusted key")


def _read_provenance(bundle: Path, public_key: Path) -> tuple[Check, dict[str, Any] | None]:
    path = bundle / PROVENANCE
    if not path.is_file():
        return Check("provenance signature", False, f"{PROVENANCE} is missing"), None
    try:
        stmt = dsse_verify(json.loads(path.read_text()), load_public_key(public_key))
    except (EnvelopeError, ValueError) as e:
        return Check("provenance signature", False, str(e)), None
    return Check("provenance signature", True, "DSSE signature verifies with the trusted key"), stmt


def _check_subject(bundle: Path, stmt: dict[str, Any] | None) -> Check:
    if stmt is None:
        return Check("provenance subject", False, "no verified provenance to compare with")
    if stmt.get("_type") != STATEMENT_TYPE or stmt.get("predicateType") != PREDICATE_TYPE:
        return Check("provenance subject", False, "not an in-toto Statement v1 with SLSA v1 provenance")
    subjects = {s["name"]: s["digest"].get("sha256") for s in stmt.get("subject", [])}
    onnx = file_digest(bundle / MODEL).value if (bundle / MODEL).is_file() else None
    if subjects.get(MODEL) != onnx:
        return Check("provenance subject", False, f"provenance names another {MODEL} than the one present")
    if subjects.get("release-bundle") != bundle_digest(signed_files(bundle)).value:
        return Check(
            "provenance subject", False, "provenance names another release bundle than the one present"
        )
    return Check("provenance subject", True, f"{MODEL} and the bundle digest match the provenance subject")


def _check_tags(bundle: Path, tags: dict[str, str], stmt: dict[str, Any] | None) -> Check:
    onnx = file_digest(bundle / MODEL).value if (bundle / MODEL).is_file() else "missing"
    if tags.get("onnx_sha256") != onnx:
        return Check("registry tags", False, "the model version's onnx_sha256 tag does not match model.onnx")
    prov = bundle / PROVENANCE
    if prov.is_file() and tags.get("provenance_sha256") != file_digest(prov).value:
        return Check("registry tags", False, "the model version's provenance_sha256 tag does not match")
    key = (stmt or {}).get("predicate", {}).get("buildDefinition", {}).get("internalParameters", {})
    if stmt is not None and tags.get("release_key") != key.get("release_key"):
        return Check(
            "registry tags", False, "the model version's release_key tag does not match the provenance"
        )
    return Check("registry tags", True, "registry tags agree with the files and the provenance")


def dvc_object_path(remote: Path, md5: str) -> Path:
    """Where a local DVC 3 remote keeps the object with this md5."""
    return remote / "files" / "md5" / md5[:2] / md5[2:]


def check_dvc_remote(remote_url: str, md5: str) -> Check:
    """The DVC object `md5` is in the (local) remote and its content still has that md5.

    A remote that cannot be reached or read fails the check, saying so: absent evidence is
    never taken for present evidence.
    """
    parts = urlsplit(remote_url)
    if parts.scheme not in ("", "file"):
        return Check("data snapshot", False, f"cannot check a {parts.scheme}:// DVC remote from here")
    remote = Path(parts.path if parts.scheme else remote_url)
    if not remote.is_dir():
        return Check("data snapshot", False, f"cannot reach the DVC remote {remote}: no such folder")
    try:
        return _check_dvc_object(remote, md5)
    except OSError as e:
        return Check("data snapshot", False, f"cannot read the DVC remote {remote}: {e}")


def _check_dvc_object(remote: Path, md5: str) -> Check:
    obj = dvc_object_path(remote, md5)
    if not obj.is_file():
        return Check("data snapshot", False, f"DVC object {md5} is not in the remote {remote}")
    if file_digest(obj, "md5").value != md5.removesuffix(".dir"):
        return Check("data snapshot", False, f"DVC object {md5} in the remote does not have that md5")
    if md5.endswith(".dir"):
        entries = json.loads(obj.read_text())
        missing = [e["relpath"] for e in entries if not dvc_object_path(remote, e["md5"]).is_file()]
        if missing:
            return Check(
                "data snapshot", False, f"{len(missing)} file(s) of the snapshot missing, e.g. {missing[0]}"
            )
    return Check("data snapshot", True, f"DVC md5 {md5} is in the remote with that content")


def _check_data(stmt: dict[str, Any] | None) -> Check:
    if stmt is None:
        return Check("data snapshot", False, "no verified provenance names a data snapshot")
    deps = stmt["predicate"]["buildDefinition"]["resolvedDependencies"]
    data = next((d for d in deps if d["name"].startswith("data:")), None)
    if data is None:
        return Check("data snapshot", False, "the provenance names no data snapshot")
    url = data.get("annotations", {}).get("dvc_remote_url")
    if not url:
        return Check("data snapshot", False, "the snapshot was not pushed to a DVC remote")
    return check_dvc_remote(url, data["digest"]["md5"])


def verify_bundle(
    bundle: Path,
    public_key: Path,
    *,
    tags: dict[str, str] | None = None,
    check_data: bool = True,
    target: str = "",
) -> Verification:
    """Run every check on a bundle folder with the trusted `public_key`."""
    checks = [_check_format(bundle), _check_files(bundle), _check_signature(bundle, public_key)]
    prov_check, stmt = _read_provenance(bundle, public_key)
    checks += [prov_check, _check_subject(bundle, stmt)]
    if tags is not None:
        checks.append(_check_tags(bundle, tags, stmt))
    if check_data:
        checks.append(_check_data(stmt))
    return Verification(target or str(bundle), checks)


def resolve_version(uri: str, tracking_uri: str) -> tuple[str, str, dict[str, str]]:
    """(name, version, tags) of the model version `uri` points at; unknown ones are bad input."""
    found = Registry(tracking_uri).version(parse_model_uri(uri))
    if found is None:
        raise BadInputError(f"no model version {uri} in the registry")
    return found.name, found.version, found.tags


def verify_model_uri(
    uri: str,
    tracking_uri: str,
    public_key: Path,
    *,
    use: Callable[[Path], object] | None = None,
    require: Collection[str] = ("provenance",),
    policy_digest: str | None = None,
) -> Verification:
    """Download the model version `uri` and verify it; `use` then runs on the verified folder.

    `require` names what must hold (`attestflow.evidence_check.REQUIREMENTS`): ``provenance``
    is `verify_bundle`'s checks; ``gates`` and ``approval`` the signed evidence, about this
    model version (and, with `policy_digest`, gated under that policy).
    """
    import mlflow

    from attestflow.evidence_check import verify_release
    from attestflow.tracking import fluent_uri

    name, version, tags = resolve_version(uri, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="attestflow-verify-") as tmp:
        with fluent_uri(tracking_uri):
            local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp))
        result = verify_release(
            local,
            public_key,
            require=require,
            tags=tags,
            target=f"models:/{name}/{version}",
            model_name=name,
            version=version,
            policy_digest=policy_digest,
        )
        if result.ok and use is not None:
            use(local)
    return result
