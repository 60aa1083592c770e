"""Stage `sign`: sign the release bundle (OpenSSF model-signing) and its SLSA provenance (DSSE).

The bundle is the folder that gets registered and deployed, byte for byte: the complete
MLflow model (``MLmodel``, ``model.onnx``, environment files, signature and input example)
plus ``attestation/`` with the config, the data snapshot manifest, the metrics, the AI bill
of materials (`attestflow.aibom`, with the locks it names) and the provenance. The
provenance says how the bundle was made and is signed on its own (DSSE); then model-signing signs every file of the folder (a sigstore bundle in
``attestation/model.sig``), so that nothing a loader reads is unsigned, either can be checked
offline with the public key, and no file can be changed or added without a signature breaking.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from attestflow.adapters import load_adapter
from attestflow.aibom import bom_inputs, write_aibom
from attestflow.bundle import (
    ATTESTATION,
    ATTRIBUTIONS,
    MODEL,
    PROVENANCE,
    PUBLIC_KEY,
    SIGNATURE,
    bundle_digest,
    signed_files,
)
from attestflow.checks.commits import release_commit_signed
from attestflow.checks.lockenv import ENVIRONMENT_DEPENDENCY, code_lock, environment_digest
from attestflow.config import DataConfig, ModelConfig, ReleaseConfig
from attestflow.dataset import load_splits
from attestflow.digests import Digest, file_digest, json_digest
from attestflow.lineage import CodeRevision
from attestflow.provenance import resource, statement
from attestflow.records import (
    ExplanationRecord,
    Invocation,
    OnnxExportRecord,
    OnnxValidationRecord,
    SignatureRecord,
    SnapshotRecord,
    TrainingRecord,
    to_jsonable,
    write_json,
)
from attestflow.signers import Signer, signer_for
from attestflow.workspace import Workspace


def release_key(parts: dict[str, str]) -> str:
    """A stable id of a release's inputs, for idempotent registration."""
    return json_digest(parts).value


def code_inputs(revision: CodeRevision) -> dict[str, str]:
    """What the release key takes from the code: its commit, and the digest of uncommitted or untracked changes."""
    changes = {"code_changes_sha256": revision.changes} if revision.dirty else {}
    return {"git_commit": revision.commit, **changes}


def release_signer(cfg: ReleaseConfig, ws: Workspace) -> Signer:
    """The configured key (file, Secret block or token), or the workspace's pair (created on first use)."""
    return signer_for(cfg.sign.key_spec(), ws.root)


_CODE_ROOT = Path(__file__).resolve().parents[1]


def lock_digest() -> Digest | None:
    """SHA-256 of the dependency lock this code was installed from, when it is beside the code."""
    lock = code_lock(_CODE_ROOT)
    return file_digest(lock) if lock is not None else None


def _save_mlflow_model(
    folder: Path, onnx_path: Path, data: DataConfig, model: ModelConfig, *, run_id: str
) -> None:
    """Write `folder` as an MLflow onnx-flavor model holding exactly the exported bytes of `onnx_path`.

    Signature and input example come from the held-out rows and ONNX Runtime's outputs on
    them, every output by name (the logits, and the predicted label in the user's values), so
    ``mlflow.pyfunc`` predictions on a dict of inputs come back as a dict of both; the CPU
    provider is the one every host has.
    """
    import mlflow.onnx
    import onnx
    from mlflow.models import Model, infer_signature

    from attestflow.onnx_runtime import session

    _, test = load_splits(data, load_adapter(model))
    example = test.head(5).inputs
    sess = session(onnx_path, "cpu")
    outputs = {
        o.name: np.asarray(v) for o, v in zip(sess.get_outputs(), sess.run(None, example), strict=True)
    }
    mlflow.onnx.save_model(
        onnx.load(str(onnx_path)),
        str(folder),
        mlflow_model=Model(run_id=run_id),
        signature=infer_signature(example, outputs),
        input_example=example,
        onnx_execution_providers=["CPUExecutionProvider"],
        save_as_external_data=False,
    )
    # MLflow re-serializes the graph; the bundle keeps the bytes the export stage hashed and validated.
    shutil.copyfile(onnx_path, folder / MODEL)


def _base_dependency(trained: TrainingRecord) -> list[dict[str, Any]]:
    """The base checkpoint (or warm start) as a resolved dependency; none for a model trained from scratch."""
    if trained.architecture is not None:
        return []
    return [resource("base_checkpoint", {"sha256": trained.base_checkpoint_digest.value})]


def _templates(invocation: Invocation) -> dict[str, Any]:
    """The digests of the repository's prompt templates, where it has any (`attestflow.checks.templates`)."""
    digests = invocation.preflight.template_digests if invocation.preflight else {}
    return {"templates_sha256": digests} if digests else {}


def _training_start(trained: TrainingRecord) -> dict[str, Any]:
    """What training started from; trained from scratch, the architecture spec and its digest too."""
    if trained.architecture is None:
        return {"trained_from": trained.trained_from}
    return {
        "trained_from": "scratch",
        "architecture": trained.architecture,
        "architecture_sha256": trained.base_checkpoint_digest.value,
    }


def sign(
    cfg: ReleaseConfig,
    snap: SnapshotRecord,
    trained: TrainingRecord,
    exported: OnnxExportRecord,
    checked: OnnxValidationRecord,
    *,
    ws: Workspace,
    out_dir: Path,
    invocation: Invocation,
    explained: ExplanationRecord | None = None,
) -> SignatureRecord:
    """Assemble the bundle, write DSSE-signed SLSA provenance, and sign the whole folder with model-signing."""
    revision = invocation.revision

    bundle = out_dir / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    _save_mlflow_model(bundle, exported.onnx_path, cfg.data, cfg.model, run_id=trained.mlflow_run_id)
    (bundle / ATTESTATION).mkdir()
    write_json(bundle / ATTESTATION / "config.json", cfg.model_dump(mode="json"))
    shutil.copy2(snap.manifest_path, bundle / ATTESTATION / "data_manifest.json")
    write_json(
        bundle / ATTESTATION / "metrics.json",
        {"onnx_validation": to_jsonable(checked), "training": trained.metrics},
    )
    if explained is not None:
        shutil.copy2(explained.path, bundle / ATTRIBUTIONS)

    write_aibom(bundle, bom_inputs(cfg, snap, trained, exported, checked), _CODE_ROOT)

    signer = release_signer(cfg, ws)
    shutil.copy2(signer.public_key, bundle / PUBLIC_KEY)
    files = signed_files(bundle)
    folder = bundle_digest(files)
    lock = lock_digest()
    inputs = {
        "data_md5": snap.dvc_md5,
        "data_manifest_sha256": snap.manifest_digest.value,
        "config_sha256": cfg.digest().value,
        **code_inputs(revision),
        "lock_sha256": lock.value if lock else "absent",
        **trained.start_tags(),
    }
    key = release_key(inputs)
    data_uri = f"{snap.remote_url}#{snap.dvc_md5}" if snap.remote_url else None
    code_changes = {"changes_sha256": revision.changes} if revision.dirty else {}
    signed, signature = release_commit_signed(_CODE_ROOT)
    dependencies = [
        resource(
            f"data:{snap.data_path.name}",
            {"md5": snap.dvc_md5, "sha256": snap.manifest_digest.value},
            data_uri,
            dvc_remote=snap.remote,
            dvc_remote_url=snap.remote_url,
            dvc_file=snap.dvc_file.name,
            manifest="attestation/data_manifest.json",
        ),
        *_base_dependency(trained),
        resource(
            "code",
            {"gitCommit": revision.commit},
            dirty=revision.dirty,
            **code_changes,
            signed=signed,
            signature=signature,
        ),
    ]
    if lock:
        dependencies.append(resource("requirements.lock", {"sha256": lock.value}))
    # The lock names what should be installed; this digest, what was (see attestflow.checks.lockenv).
    dependencies.append(resource(ENVIRONMENT_DEPENDENCY, {"sha256": environment_digest().value}))
    stmt = statement(
        subjects=[
            resource("model.onnx", {"sha256": exported.digest.value}),
            resource("release-bundle", {"sha256": folder.value}),
        ],
        external_parameters={
            "model_name": cfg.model_name,
            "config_path": invocation.config_path,
            "overrides": invocation.overrides,
            "config_sha256": cfg.digest().value,
            "triggered_by": invocation.triggered_by,
            **_templates(invocation),
            **({"environment": cfg.environment} if cfg.environment else {}),
        },
        internal_parameters={
            "release_key": key,
            "training_key": trained.training_key,
            "device": trained.device,
            "precision": trained.precision,
            "onnx_opset": exported.opset,
            "onnx_provider": checked.provider,
            **_training_start(trained),
            "missing_values": cfg.data.missing,
            "classes": cfg.data.classes,
            **({"preflight": invocation.preflight.as_json()} if invocation.preflight else {}),
        },
        dependencies=dependencies,
        builder_id=cfg.sign.builder_id,
        invocation_id=invocation.flow_run_id,
        started_on=invocation.started_on,
        finished_on=datetime.now(UTC).isoformat(timespec="seconds"),
        byproducts=[
            resource("mlflow_run", {}, f"runs:/{trained.mlflow_run_id}"),
            resource("checkpoint", {"sha256": trained.checkpoint_digest.value}),
            resource(
                "signing_key", {"sha256": signer.key_id.removeprefix("sha256:")}, signer=signer.describe()
            ),
        ],
    )
    write_json(bundle / PROVENANCE, signer.sign_dsse(stmt))
    signer.sign_bundle(bundle)
    return SignatureRecord(
        bundle_dir=bundle,
        onnx_digest=exported.digest,
        bundle_digest=folder,
        signature_path=bundle / SIGNATURE,
        signature_digest=file_digest(bundle / SIGNATURE),
        provenance_path=bundle / PROVENANCE,
        provenance_digest=file_digest(bundle / PROVENANCE),
        key_id=signer.key_id,
        release_key=key,
    )


sign_task = task(name="sign")(sign)
