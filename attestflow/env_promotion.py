"""Promotion between environments: what `attestflow promote MODEL_URI --to ENV` decides and signs.

MLflow's answer to environments is one registered model per environment and
``copy_model_version`` between them; the copy alone proves nothing about where the version
came from. Here the version is verified in its source environment with a key the target
trusts for it (its signature, provenance, PASSED gate verdict and approval), the target re-runs
its own gates on its own labelled data and asks its own approvers, and then signs, with the
target's key, the bundle itself (its own model signature of the same files, so that serving in
the target needs only the target's public key) and a promotion statement that binds that
signature, the source bundle and every file of its ``evidence/`` to the target version
(`promotion_statement`). The one evidence check reads it
back (`attestflow.evidence_check.promoted_evidence`). The flow that composes these steps is
`flows.env_promote`; this module holds what it composes, without Prefect.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from attestflow.audit import AuditLog
from attestflow.bundle import MODEL, PROVENANCE, SIGNATURE, bundle_digest, signed_files
from attestflow.config import ReleaseConfig, load_config
from attestflow.context import CODE_ROOT, ReleaseContext
from attestflow.digests import file_digest
from attestflow.dsse import statement
from attestflow.environments import (
    Environment,
    Environments,
    apply_environment,
    environment_trust,
    get_environment,
    load_environments,
)
from attestflow.errors import BadInputError
from attestflow.evidence import APPROVAL, PROMOTION, now
from attestflow.evidence_check import (
    REQUIREMENTS,
    EnvTrust,
    environment_signature,
    first_verifying,
    verify_release,
)
from attestflow.evidence_read import evidence_files, read_evidence
from attestflow.keys import key_id, load_public_key
from attestflow.lineage import actor, code_revision
from attestflow.outcomes import PromotionOutcome
from attestflow.policy import load_policy
from attestflow.preflight import materialize
from attestflow.records import AuditEvent, Invocation, RegistrationRecord, SignatureRecord
from attestflow.redact import redact
from attestflow.registry import PROMOTED_FROM, ModelVersion, Registry, parse_model_uri
from attestflow.tracking import tracking_uri
from attestflow.verify import Check, Verification, download_bundle
from attestflow.workspace import Workspace

DEFAULT_ENVIRONMENTS = Path("configs/environments.yaml")


@dataclass(frozen=True)
class Source:
    """The version being promoted, in its own environment."""

    env: str
    model: str
    version: str
    tracking_uri: str

    @property
    def label(self) -> str:
        """``<env>:<model>/<version>``, the value of the `PROMOTED_FROM` tag."""
        return f"{self.env}:{self.model}/{self.version}"

    @property
    def uri(self) -> str:
        return f"models:/{self.model}/{self.version}"


def target_env(envs: Environments, to: str) -> Environment:
    """The environment `to`, which must take versions from another (`promote_from`) it trusts keys of."""
    env = get_environment(envs, to)
    if env.promote_from is None or env.promote_from not in envs.environments:
        raise BadInputError(f"environment {to} takes no promotions: set promote_from to a known environment")
    if not env.trusts:
        raise BadInputError(f"environment {to} trusts no key of {env.promote_from}: set trusts")
    if env.gates is None:
        raise BadInputError(f"environment {to} names no gates to re-run (gates.policy, gates.data)")
    if env.key.public_key is None:
        raise BadInputError(f"environment {to} names no public key (key.public_key)")
    return env


def promotion_config(cfg: ReleaseConfig, env: Environment) -> ReleaseConfig:
    """The target's config for a promotion: its environment applied, its labelled data, gate policy and canary."""
    if env.gates is None:
        raise BadInputError(f"environment {env.name} names no gates to re-run (gates.policy, gates.data)")
    cfg = apply_environment(cfg, env)
    return cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"path": env.gates.data}),
            "gates": cfg.gates.model_copy(update={"policy": env.gates.policy}),
            "canary": env.canary or cfg.canary,
        }
    )


@dataclass(frozen=True)
class Promotion:
    """One promotion of `source` into environment `env`, and the target's release context."""

    source: Source
    env: Environment
    trust: EnvTrust
    ctx: ReleaseContext
    reason: str

    @property
    def folder(self) -> Path:
        """Where the source version is downloaded to, in the promotion's folder."""
        return self.ctx.release_dir / "source"

    @property
    def run_name(self) -> str:
        return f"promote {self.source.model} v{self.source.version} {self.source.env} -> {self.env.name}"

    @property
    def tags(self) -> list[str]:
        return [f"env:{self.env.name}", f"promote_from:{self.source.env}"]


def open_promotion(
    model_uri: str,
    to: str,
    *,
    environments: Path,
    config_path: Path,
    flow_run_id: str,
    reason: str = "",
) -> Promotion:
    """Load both environments, resolve `model_uri` in the source's registry, and build the target's context."""
    envs = load_environments(environments)
    env = target_env(envs, to)
    base = load_config(config_path)
    ws = Workspace.at(base.workspace)
    ws.activate()
    source_env = get_environment(envs, env.promote_from or "")
    source_uri = tracking_uri(source_env.tracking_uri, ws)
    ref = parse_model_uri(model_uri)
    if ref.name != source_env.model_name:
        raise BadInputError(
            f"{model_uri} is not a version of {source_env.name}'s model {source_env.model_name!r}"
        )
    found = Registry(source_uri).version(ref)
    if found is None:
        raise BadInputError(f"no model version {model_uri} in {source_env.name}'s registry")
    cfg = promotion_config(base, env)
    for path in dict.fromkeys(p for p in (cfg.data.path, cfg.canary.sample) if p is not None):
        if not path.exists() and not materialize(path, cfg.snapshot.repo):
            raise BadInputError(f"environment {env.name}: {path} does not exist")
    who = redact(actor())
    invocation = Invocation(str(config_path), [], flow_run_id, now(), who, code_revision(CODE_ROOT))
    ctx = ReleaseContext(
        cfg=cfg,
        policy=load_policy(cfg.gates.policy),
        ws=ws,
        invocation=invocation,
        release_dir=ws.releases / cfg.model_name / flow_run_id,
        tracking_uri=tracking_uri(cfg.register.tracking_uri, ws),
        audit=AuditLog.configured(cfg, ws.root),
    )
    trust = environment_trust(envs, env.name)
    if trust is None:
        raise BadInputError(f"environment {to} takes no promotions: set promote_from")
    return Promotion(Source(source_env.name, found.name, found.version, source_uri), env, trust, ctx, reason)


def verify_source(p: Promotion) -> tuple[Verification, Path | None, dict[str, str]]:
    """Download the source version and verify it with the first trusted key that holds; its tags too."""
    src = p.source
    found = Registry(src.tracking_uri).version(parse_model_uri(src.uri))
    if found is None:
        raise BadInputError(f"no model version {src.uri} in {src.env}'s registry")
    p.folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(p.folder, ignore_errors=True)
    local = download_bundle(
        src.model, src.version, src.tracking_uri, Path(tempfile.mkdtemp(dir=p.folder.parent))
    )
    if isinstance(local, str):
        return Verification(src.uri, [Check("files", False, local)]), None, found.tags
    shutil.move(local, p.folder)
    result, key = first_verifying(
        p.trust.source_keys,
        lambda k: verify_release(
            p.folder,
            k,
            require=REQUIREMENTS,
            tags=found.tags,
            target=f"{src.env}:{src.uri}",
            model_name=src.model,
            version=src.version,
        ),
    )
    return result, key, found.tags


def approved_at(folder: Path, key: Path) -> datetime | None:
    """When the newest signed approval in the folder's ``evidence/`` was made (the source's)."""
    approvals = read_evidence(folder, key).of(APPROVAL)
    return approvals[-1].time if approvals else None


def signature_of(folder: Path, key: Path, tags: dict[str, str]) -> SignatureRecord:
    """The signed bundle a verified folder holds, as the record the statements about it are built from."""
    return SignatureRecord(
        bundle_dir=folder,
        onnx_digest=file_digest(folder / MODEL),
        bundle_digest=bundle_digest(signed_files(folder)),
        signature_path=folder / SIGNATURE,
        signature_digest=file_digest(folder / SIGNATURE),
        provenance_path=folder / PROVENANCE,
        provenance_digest=file_digest(folder / PROVENANCE),
        key_id=key_id(load_public_key(key)),
        release_key=tags.get("release_key", ""),
    )


def find_copy(registry: Registry, model_name: str, source: Source) -> ModelVersion | None:
    """The version an earlier run of this promotion already copied into the target model, if any."""
    found = registry.find_versions(model_name, **{PROMOTED_FROM: source.label})
    return found[0] if found else None


def promotion_statement(
    source: Source,
    env: str,
    folder: Path,
    signed: SignatureRecord,
    registered: RegistrationRecord,
    approvers: list[str],
    *,
    signature: Path,
    reason: str = "",
    time: str | None = None,
) -> dict[str, Any]:
    """The target `env`'s statement binding the source bundle and its evidence (in `folder`) to the target version.

    It names, by digest, `signature`: the target's own model signature of the same bundle, stored
    beside it as ``environments/<env>/model.sig``.
    """
    named = {"uri": environment_signature(env), "digest": {"sha256": file_digest(signature).value}}
    predicate = {
        "source": {
            "env": source.env,
            "model": source.model,
            "version": source.version,
            "bundle": {"sha256": signed.bundle_digest.value},
            "key_id": signed.key_id,
            "evidence": evidence_files(folder),
        },
        "target": {
            "env": env,
            "model": registered.model_name,
            "version": registered.version,
            "signature": named,
        },
        "approvers": approvers,
        "reason": reason,
        "result": "promoted",
        "time": time or now(),
    }
    subject = [{"name": MODEL, "digest": {"sha256": signed.onnx_digest.value}}]
    return statement(subject, PROMOTION, predicate)


def environments_path(given: Path | None) -> Path:
    """The environments file: given, else ``$ATTESTFLOW_ENVIRONMENTS``, else ``configs/environments.yaml``."""
    return given or Path(os.environ.get("ATTESTFLOW_ENVIRONMENTS", str(DEFAULT_ENVIRONMENTS)))


@dataclass(frozen=True)
class CopyRecord:
    """The source version as a version of the target's registered model."""

    source: Source
    registered: RegistrationRecord
    method: str
    """``copy_model_version`` (one registry), or ``download and register`` (another registry)."""
    reused: bool = False
    """True when an earlier run of this promotion had made the copy (found by its `PROMOTED_FROM` tag)."""

    def audit_events(self) -> list[AuditEvent]:
        details = {"from": self.source.label, "method": self.method, "reused": self.reused}
        return [AuditEvent("copied", details, self.registered.version)]


@dataclass(frozen=True)
class EnvPromotionSummary:
    """What a promotion between environments did."""

    source: str
    """``<env>:<model>/<version>``."""
    environment: str
    model_name: str
    version: str
    """The version in the target's registered model."""
    outcome: PromotionOutcome
    seconds: float
