"""Reading a bundle's AI bill of materials back: the ``aibom`` check of `attestflow.verify`, and its licences.

A BOM is a claim its signer makes about the bundle; the model signature says it was not
changed, not that it is true. So `check_aibom` compares it with what the bundle itself shows:
it must be valid CycloneDX 1.6 (the library's strict validator), its ``machine-learning-model``
component must carry the SHA-256 of this ``model.onnx``, and its libraries must be exactly the
pins of the lock whose SHA-256 the provenance records as its ``requirements.lock`` dependency
(the copy in ``attestation/``): every library at its lock's version (an installer the lock
does not pin excepted, as the lock check excepts it), every unconditional pin of that lock present. Libraries of an optional extra name their own lock (copied beside it).
A bundle signed without a BOM has nothing to compare, and the check says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from attestflow.aibom import LOCK_PROPERTY, MODEL_REF, validation_error
from attestflow.bundle import AIBOM, ATTESTATION, MODEL
from attestflow.checks.lockenv import INSTALLERS
from attestflow.checks.lockfile import Pin, normalize, parse_lock
from attestflow.digests import file_digest
from attestflow.errors import BadInputError

LOCK_DEPENDENCY = "requirements.lock"
"""The provenance's resolved dependency naming the lock's SHA-256 (`tasks.sign`)."""


def read_bom(path: Path) -> dict[str, Any]:
    """The BOM as JSON, refused (ValueError) unless it is valid CycloneDX 1.6."""
    text = path.read_text(encoding="utf-8")
    problem = validation_error(text)
    if problem:
        raise ValueError(f"not valid CycloneDX 1.6: {problem}")
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("specVersion") != "1.6":
        raise ValueError("not a CycloneDX 1.6 document (specVersion)")
    return doc


def _property(component: dict[str, Any], name: str) -> str | None:
    return next((p.get("value") for p in component.get("properties", []) if p.get("name") == name), None)


def bom_libraries(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The BOM's ``pkg:pypi`` libraries: normalised name -> (version, the lock that pins it)."""
    return {
        normalize(c["name"]): (str(c.get("version")), _property(c, LOCK_PROPERTY) or "none")
        for c in doc.get("components", [])
        if c.get("type") == "library" and str(c.get("purl", "")).startswith("pkg:pypi/")
    }


def component_licence(component: dict[str, Any]) -> str | None:
    """A component's licences as one expression (several entries all apply: AND); None when it has none."""
    parts = []
    for entry in component.get("licenses", []):
        if "expression" in entry:
            parts.append(str(entry["expression"]))
        else:
            licence = entry.get("license", {})
            if licence.get("id") or licence.get("name"):
                parts.append(str(licence.get("id") or licence.get("name")))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else " AND ".join(f"({p})" for p in parts)


def licences(doc: dict[str, Any]) -> dict[str, str | None]:
    """``name==version`` -> declared licence of every package of the BOM (libraries, and a packaged base model).

    Components that are no package (a checkpoint file, the champion a warm start began from, the
    released model, the dataset) declare no licence anywhere; the BOM records their digests only.
    """
    return {
        f"{c['name']}=={c.get('version', '')}": component_licence(c)
        for c in doc.get("components", [])
        if c.get("purl") and c.get("bom-ref") != MODEL_REF
    }


def _model_hash(doc: dict[str, Any]) -> str | None:
    model = next((c for c in doc.get("components", []) if c.get("bom-ref") == MODEL_REF), None)
    if model is None or model.get("type") != "machine-learning-model":
        return None
    return next((h.get("content") for h in model.get("hashes", []) if h.get("alg") == "SHA-256"), None)


def _lock_digest(provenance: dict[str, Any]) -> str | None:
    deps = provenance.get("predicate", {}).get("buildDefinition", {}).get("resolvedDependencies", [])
    dep = next((d for d in deps if d.get("name") == LOCK_DEPENDENCY), None)
    return None if dep is None else dep.get("digest", {}).get("sha256")


def _same(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _lock_differences(
    libs: dict[str, tuple[str, str]], main: str, locks: dict[str, dict[str, Pin]]
) -> list[str]:
    """Every way the BOM's libraries differ from the pins of the locks they name (`main` complete)."""
    problems = []
    for name, (version, lock) in sorted(libs.items()):
        if lock == "none" and name in INSTALLERS:
            continue  # pip and its kind install the rest; a lock need not pin them (`attestflow.checks.lockenv`)
        pin = locks.get(lock, {}).get(name)
        if lock not in locks:
            problems.append(f"{name}=={version} is pinned by {lock}, which is not in the bundle")
        elif pin is None:
            problems.append(f"{name}=={version} is not pinned by {lock}")
        elif not _same(version, pin.version):
            problems.append(f"{name}=={version} but {lock} pins {pin.version}")
    problems += [
        f"{name}=={pin.version} of {main} is not in the BOM"
        for name, pin in sorted(locks[main].items())
        if pin.marker is None and name not in libs
    ]
    return problems


def check_aibom(bundle: Path, files: frozenset[str], provenance: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether the bundle's BOM is valid 1.6, names this ``model.onnx`` and exactly the recorded lock's pins."""
    if AIBOM not in files:
        return True, f"no {AIBOM} in this bundle (signed without an AI bill of materials): nothing to compare"
    try:
        doc = read_bom(bundle / AIBOM)
    except (ValueError, OSError) as e:
        return False, f"{AIBOM}: {e}"
    onnx = file_digest(bundle / MODEL).value if MODEL in files else None
    if _model_hash(doc) != onnx:
        return False, f"the BOM's machine-learning-model component names another {MODEL} than the one present"
    recorded = _lock_digest(provenance or {})
    if recorded is None:
        return False, "no verified provenance records the lock, so the BOM's libraries cannot be checked"
    copies = sorted(f for f in files if f.startswith(f"{ATTESTATION}/") and f.endswith(".lock"))
    main = next((f for f in copies if file_digest(bundle / f).value == recorded), None)
    if main is None:
        return False, f"no lock in {ATTESTATION}/ has the SHA-256 the provenance records ({recorded[:12]})"
    try:
        locks = {Path(f).name: parse_lock(bundle / f) for f in copies}
    except BadInputError as e:
        return False, str(e)
    libs = bom_libraries(doc)
    problems = _lock_differences(libs, Path(main).name, locks)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return False, "the BOM's libraries are not the lock's: " + "; ".join(problems[:3]) + more
    return (
        True,
        f"valid CycloneDX 1.6; model.onnx's SHA-256; {len(libs)} libraries at the pins of the recorded lock",
    )
