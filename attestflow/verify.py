"""Verification of a release bundle: what `attestflow verify`, promotion and loading all run.

A model is trusted only if every check holds: the model signature verifies with the trusted
public key (never a key shipped inside the bundle) over every file of the folder, and no file
is there that it does not list (the MLflow model a loader reads included); it is ONNX by
content with allowed operators; the provenance signature verifies, the provenance names
exactly these bytes and the model name it is registered under; the registry's tags agree;
the AI bill of materials names these bytes and the recorded lock's pins (`attestflow.aibom_check`);
and the data snapshot the provenance names is still in the DVC remote with that md5.

Order matters: the folder is listed with ``lstat`` first and refused, unopened, if it holds
a symlink or a special file; the signature is checked next; paths a manifest names are only
looked up among the plain files listed, never opened as given; and a download that fails is
a failed check with its reason, not an exception.
"""

from __future__ import annotations

import ast
import json
import re
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestflow.aibom_check import check_aibom
from attestflow.bundle import (
    MODEL,
    PROVENANCE,
    SIGNATURE,
    Listing,
    bundle_digest,
    hashing_config,
    list_bundle,
    outside_signature,
    signature_manifest,
    signed_files,
    unsafe_path,
)
from attestflow.digests import file_digest
from attestflow.dsse import EnvelopeError, dsse_verify
from attestflow.dvc_remote import check_snapshot, local_path
from attestflow.errors import BadInputError
from attestflow.keys import load_public_key
from attestflow.onnx_check import check_onnx
from attestflow.provenance import PREDICATE_TYPE, STATEMENT_TYPE
from attestflow.registry import Registry, first_line, parse_model_uri

if TYPE_CHECKING:
    from attestflow.evidence_check import EnvTrust

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


def _refused(listing: Listing) -> list[Check]:
    """The checks of a folder holding a symlink or special file: nothing in it is opened."""
    shown = "; ".join(listing.refused[:3]) + (
        f" (and {len(listing.refused) - 3} more)" if len(listing.refused) > 3 else ""
    )
    return [
        Check("signature", False, "not checked: the folder holds entries that are not plain files"),
        Check("files", False, f"refused without opening: {shown}"),
    ]


_MISMATCH = (
    ("not signed", re.compile(r"^Extra files found in model '.*': (.+)$", re.S)),
    ("missing", re.compile(r"^Missing files in model '.*': (.+)$", re.S)),
    ("changed", re.compile(r"^Hash mismatch for '(.+?)': Expected", re.S)),
)


def _signing_failure(e: BaseException) -> str:
    """model-signing's reason in one short line: which files differ, not their digests' reprs."""
    text = str(e)
    try:  # "Signature mismatch: [...]" carries the repr of a list of strings
        items = ast.literal_eval(text.removeprefix("Signature mismatch: "))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        items = None
    if text.startswith("Signature mismatch") and isinstance(items, list):
        found = {what: [m.group(1) for i in items if (m := rx.match(str(i)))] for what, rx in _MISMATCH}
        differ = "; ".join(f"{what}: {', '.join(names)}" for what, names in found.items() if names)
        if differ:
            return f"the folder differs from what was signed ({differ[:300]})"
    return (text.splitlines() or [type(e).__name__])[0][:300]


def _check_signature(bundle: Path, listing: Listing, public_key: Path, signature: str = SIGNATURE) -> Check:
    """model-signing over the whole folder: a file it does not list fails, as does one it lists and lacks."""
    import model_signing

    if signature not in listing.files:
        return Check("signature", False, f"{signature} is missing")
    try:
        (
            model_signing.verifying.Config()
            .use_elliptic_key_verifier(public_key=public_key)
            .set_hashing_config(hashing_config(bundle))
            .verify(bundle, bundle / signature)
        )
    except Exception as e:  # model-signing raises ValueError and others
        return Check("signature", False, f"model-signing verification failed: {_signing_failure(e)}")
    return Check("signature", True, "model-signing signature over every file verifies with the trusted key")


def _check_files(bundle: Path, listing: Listing, signature: str = SIGNATURE) -> Check:
    """Every plain file is listed by the signature and has its digest; manifest paths are never opened as given."""
    if signature not in listing.files:
        return Check("files", False, f"{signature} is missing")
    try:
        expected = signature_manifest(bundle / signature)
    except (ValueError, KeyError, TypeError, AttributeError):
        return Check("files", False, f"{signature} is not a model-signing bundle")
    outside = sorted(rel for rel in expected if unsafe_path(rel))
    if outside:
        return Check(
            "files",
            False,
            f"refused before hashing: the signature names a path outside the bundle: {outside[0]!r}",
        )
    if MODEL not in expected:
        return Check("files", False, f"the signature does not cover {MODEL}")
    unsigned = sorted(r for r in listing.files - expected.keys() if not outside_signature(r))
    if unsigned:
        more = f" (and {len(unsigned) - 3} more)" if len(unsigned) > 3 else ""
        verb = "is" if len(unsigned) == 1 else "are"
        return Check("files", False, f"{', '.join(unsigned[:3])}{more} {verb} not covered by the signature")
    for rel, digest in sorted(expected.items()):
        if rel not in listing.files:
            return Check("files", False, f"{rel} is missing")
        if file_digest(bundle / rel).value != digest:
            return Check("files", False, f"{rel} does not match its signed SHA-256")
    return Check("files", True, f"{len(expected)} signed files re-hashed, all match, none unsigned")


def check_model_signature(bundle: Path, public_key: Path, signature: str, name: str) -> Check:
    """Another model-signing signature in the folder (`signature`, relative) over exactly the bundle's files.

    An environment a version was promoted into signs the same files with its own key
    (`attestflow.evidence_check`); it is checked as the release's own signature is, the
    folder listed first and a special file refused unopened, and said in one line `name`.
    """
    try:
        listing = list_bundle(bundle)
    except OSError as e:
        return Check(name, False, f"cannot list {bundle}: {e.strerror or e}")
    if listing.refused:
        return replace(_refused(listing)[1], name=name)
    for check in (
        _check_signature(bundle, listing, public_key, signature),
        _check_files(bundle, listing, signature),
    ):
        if not check.ok:
            return replace(check, name=name)
    return Check(
        name, True, f"model-signing signature {signature} over every signed file verifies with the key"
    )


def _check_format(bundle: Path, listing: Listing) -> Check:
    if MODEL not in listing.files:
        return Check("format", False, f"{MODEL} is missing")
    result = check_onnx(bundle / MODEL, allowed_domains=ALLOWED_ONNX_DOMAINS)
    return Check(
        "format", result.ok, "; ".join(result.problems) or "ONNX by content, allowed operator domains"
    )


def _read_provenance(bundle: Path, listing: Listing, public_key: Path) -> tuple[Check, dict[str, Any] | None]:
    if PROVENANCE not in listing.files:
        return Check("provenance signature", False, f"{PROVENANCE} is missing"), None
    try:
        stmt = dsse_verify(json.loads((bundle / PROVENANCE).read_text()), load_public_key(public_key))
    except (EnvelopeError, ValueError) as e:
        return Check("provenance signature", False, str(e)), None
    return Check("provenance signature", True, "DSSE signature verifies with the trusted key"), stmt


def provenance_model_name(stmt: dict[str, Any]) -> str | None:
    """The model name a provenance statement was released under."""
    name = (
        stmt.get("predicate", {}).get("buildDefinition", {}).get("externalParameters", {}).get("model_name")
    )
    return name if isinstance(name, str) else None


def _check_subject(
    bundle: Path, listing: Listing, stmt: dict[str, Any] | None, model_name: str | None
) -> Check:
    if stmt is None:
        return Check("provenance subject", False, "no verified provenance to compare with")
    if stmt.get("_type") != STATEMENT_TYPE or stmt.get("predicateType") != PREDICATE_TYPE:
        return Check("provenance subject", False, "not an in-toto Statement v1 with SLSA v1 provenance")
    subjects = {s["name"]: s["digest"].get("sha256") for s in stmt.get("subject", [])}
    onnx = file_digest(bundle / MODEL).value if MODEL in listing.files else None
    if subjects.get(MODEL) != onnx:
        return Check("provenance subject", False, f"provenance names another {MODEL} than the one present")
    if subjects.get("release-bundle") != bundle_digest(signed_files(bundle)).value:
        return Check(
            "provenance subject", False, "provenance names another release bundle than the one present"
        )
    named = provenance_model_name(stmt)
    if model_name is not None and named != model_name:
        return Check(
            "provenance subject", False, f"the provenance is about model {named!r}, not {model_name!r}"
        )
    about = f" of model {named!r}" if model_name is not None else ""
    return Check(
        "provenance subject", True, f"{MODEL} and the bundle digest{about} match the provenance subject"
    )


def _check_tags(bundle: Path, listing: Listing, tags: dict[str, str], stmt: dict[str, Any] | None) -> Check:
    onnx = file_digest(bundle / MODEL).value if MODEL in listing.files else "missing"
    if tags.get("onnx_sha256") != onnx:
        return Check("registry tags", False, "the model version's onnx_sha256 tag does not match model.onnx")
    prov = bundle / PROVENANCE
    if PROVENANCE in listing.files and tags.get("provenance_sha256") != file_digest(prov).value:
        return Check("registry tags", False, "the model version's provenance_sha256 tag does not match")
    key = (stmt or {}).get("predicate", {}).get("buildDefinition", {}).get("internalParameters", {})
    if stmt is not None and tags.get("release_key") != key.get("release_key"):
        return Check(
            "registry tags", False, "the model version's release_key tag does not match the provenance"
        )
    return Check("registry tags", True, "registry tags agree with the files and the provenance")


def check_dvc_remote(remote_url: str, md5: str) -> Check:
    """The DVC object `md5` is in the remote (any DVC supports) and its content still has that md5.

    A remote that cannot be reached or read fails the check, saying so: absent evidence is
    never taken for present evidence.
    """
    proof = check_snapshot(remote_url, md5)
    return Check("data snapshot", proof.ok, proof.detail)


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
    model_name: str | None = None,
) -> Verification:
    """Run every check on a bundle folder with the trusted `public_key`.

    The folder is listed without opening anything, and refused if it holds a symlink or a
    special file; the signature is checked next, and only then are files opened. With
    `model_name`, the provenance must have been released under that name.
    """
    target = target or str(bundle)
    try:
        listing = list_bundle(bundle)
    except OSError as e:
        return Verification(target, [Check("files", False, f"cannot list {bundle}: {e.strerror or e}")])
    if listing.refused:
        return Verification(target, _refused(listing))
    checks = [
        _check_signature(bundle, listing, public_key),
        _check_files(bundle, listing),
        _check_format(bundle, listing),
    ]
    prov_check, stmt = _read_provenance(bundle, listing, public_key)
    checks += [prov_check, _check_subject(bundle, listing, stmt, model_name)]
    checks.append(Check("aibom", *check_aibom(bundle, listing.files, stmt)))
    if tags is not None:
        checks.append(_check_tags(bundle, listing, tags, stmt))
    if check_data:
        checks.append(_check_data(stmt))
    return Verification(target, checks)


def resolve_version(uri: str, tracking_uri: str) -> tuple[str, str, dict[str, str]]:
    """(name, version, tags) of the model version `uri` points at; unknown ones are bad input."""
    found = Registry(tracking_uri).version(parse_model_uri(uri))
    if found is None:
        raise BadInputError(f"no model version {uri} in the registry")
    return found.name, found.version, found.tags


def download_bundle(name: str, version: str, tracking_uri: str, dest: Path) -> Path | str:
    """The model version's stored folder downloaded into `dest`, or why it could not be (a failed check).

    It is fetched from the version's artifact location, not through ``models:/``, which
    would add a file of MLflow's own to the folder. A local artifact store is listed first,
    as a bundle is: a FIFO there would fail the copy, a symlink to a device never end it.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from attestflow.tracking import fluent_uri

    source = Registry(tracking_uri).download_uri(name, version)
    if not source:
        return f"models:/{name}/{version} has no artifact location"
    store = local_path(source)
    try:
        refused = list_bundle(store).refused if store is not None and store.is_dir() else ()
        if refused:
            return f"refused before downloading, the registered folder holds: {'; '.join(refused[:3])}"
        with fluent_uri(tracking_uri):
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dest)))
    except (MlflowException, OSError) as e:
        return f"cannot download models:/{name}/{version}: {first_line(e)}"


def verify_model_uri(
    uri: str,
    tracking_uri: str,
    public_key: Path,
    *,
    use: Callable[[Path], object] | None = None,
    require: Collection[str] = ("provenance",),
    policy_digest: str | None = None,
    trust: EnvTrust | None = None,
) -> Verification:
    """Download the model version `uri` and verify it; `use` then runs on the verified folder.

    `require` names what must hold (`attestflow.evidence_check.REQUIREMENTS`): ``provenance``
    is `verify_bundle`'s checks; ``gates`` and ``approval`` the signed evidence, about this
    model version (and, with `policy_digest`, gated under that policy). With `trust`, the
    version was promoted into ``trust.environment``: `public_key` is not used; see
    `attestflow.evidence_check.verify_release`.
    """
    from attestflow.evidence_check import verify_release

    name, version, tags = resolve_version(uri, tracking_uri)
    target = f"models:/{name}/{version}"
    with tempfile.TemporaryDirectory(prefix="attestflow-verify-") as tmp:
        local = download_bundle(name, version, tracking_uri, Path(tmp))
        if isinstance(local, str):
            return Verification(target, [Check("files", False, local)])
        result = verify_release(
            local,
            public_key,
            require=require,
            tags=tags,
            target=target,
            model_name=name,
            version=version,
            policy_digest=policy_digest,
            trust=trust,
        )
        if result.ok and use is not None:
            use(local)
    return result
