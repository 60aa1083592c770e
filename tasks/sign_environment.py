"""Stage `sign_environment`: a promoted version's bundle signed again with the target environment's key.

A version promoted into an environment keeps its source's model signature
(``attestation/model.sig``, made with the source's key), which a serving system of the target
could only check with a key the target does not own. The target therefore signs exactly the
same files with its own key (model-signing, the one hashing config of `attestflow.bundle`; a
token's key signs inside the token, `attestflow.signers`), so that its own public key alone
verifies what it serves. The signature is written to the promotion's folder; the promotion
statement names it by digest and carries it into the version's artifacts as
``environments/<env>/model.sig`` (`tasks.attest`), where
`attestflow.evidence_check.promoted_evidence` requires it.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from attestflow.digests import file_digest
from attestflow.evidence_check import environment_signature
from attestflow.outcomes import EvidenceRecord
from attestflow.records import RegistrationRecord
from attestflow.settings import KeySpec
from attestflow.signers import signer_for


def sign_environment(
    folder: Path,
    registered: RegistrationRecord,
    *,
    environment: str,
    key: KeySpec,
    workspace_root: Path,
    out_dir: Path,
) -> EvidenceRecord:
    """Sign the verified bundle in `folder` with `environment`'s key `key`, into `out_dir` (not the bundle)."""
    where = environment_signature(environment)
    local = out_dir / where
    local.parent.mkdir(parents=True, exist_ok=True)
    signer_for(key, workspace_root).sign_bundle(folder, local)
    return EvidenceRecord(
        registered.model_name,
        registered.version,
        "model_signature",
        "signed",
        where,
        local,
        file_digest(local),
    )


sign_environment_task = task(name="sign_environment")(sign_environment)
