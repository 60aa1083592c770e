"""Stage `attest`: sign one statement about a registered version and add it to that version's evidence.

The gate verdict, the approval and the canary's verdict are decided after the bundle was
signed and registered, so each is signed on its own with the release key and added to the
registered model's artifacts under ``evidence/`` (a new file each time, never replacing one,
with the file it names by digest, if any),
where every alias move requires it (`attestflow.evidence_check`). A copy goes into the release
folder, and the Prefect run page links it beside the gates table. Once the gate verdict is
attached, the version's `attestflow.registry.INCOMPLETE` tag is removed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from prefect import task

from attestflow.artifacts import artifact_key
from attestflow.digests import file_digest
from attestflow.evidence import EVIDENCE_DIR, VSA, attachment, evidence_name, kind_of, statement_time
from attestflow.outcomes import EvidenceRecord
from attestflow.progress import in_prefect_run
from attestflow.records import RegistrationRecord, write_json
from attestflow.registry import INCOMPLETE, Registry
from attestflow.settings import KeySpec
from attestflow.signers import signer_for


def _result(stmt: dict[str, Any]) -> str:
    p = stmt["predicate"]
    return str(p.get("verificationResult") or p.get("decision") or p.get("result"))


def attest(
    stmt: dict[str, Any],
    registered: RegistrationRecord,
    *,
    key: KeySpec,
    workspace_root: Path,
    tracking_uri: str,
    out_dir: Path,
    attach: Path | None = None,
    under: str = EVIDENCE_DIR,
) -> EvidenceRecord:
    """Sign `stmt` (DSSE, the release key `key` names) and add it to `registered`'s evidence and the release folder.

    `attach` is the file the statement names by digest (the verdict's ``gates.json``), added beside it;
    `under` is the folder of the version's artifacts it goes in (an environment's: ``environments/<env>``).
    """
    kind = kind_of(stmt)
    name = evidence_name(kind, statement_time(stmt))
    local = write_json(out_dir / under / name, signer_for(key, workspace_root).sign_dsse(stmt))
    with tempfile.TemporaryDirectory(prefix="attestflow-evidence-") as tmp:
        shutil.copy2(local, Path(tmp) / name)
        if attach is not None:
            named = attachment(stmt)
            if named is None:
                raise ValueError(f"a {kind} statement names no file to attach")
            shutil.copy2(attach, Path(tmp) / Path(named).name)
        registry = Registry(tracking_uri)
        registry.add_version_artifacts(registered.model_name, registered.version, Path(tmp), under)
    if (
        stmt.get("predicateType") == VSA
    ):  # the release has recorded its decision: the version is no longer incomplete
        registry.delete_version_tag(registered.model_name, registered.version, INCOMPLETE)
    record = EvidenceRecord(
        registered.model_name,
        registered.version,
        kind,
        _result(stmt),
        f"{under}/{name}",
        local,
        file_digest(local),
    )
    if in_prefect_run():
        _publish(record, registered)
    return record


def _publish(record: EvidenceRecord, registered: RegistrationRecord) -> None:
    """A line on the run page, keyed beside the gates table, naming the signed statement and its copies."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        key=artifact_key(record.model_name, "evidence"),
        markdown=(
            f"Signed {record.kind.replace('_', ' ')} of `{registered.model_uri}`: **{record.result}**\n\n"
            f"- in the registry: `{record.artifact_path}` of `{registered.model_uri}`\n"
            f"- in the release folder: `{record.local_path}`\n"
            f"- envelope sha256 `{record.digest.value}`\n\n"
            f"It backs the gates table `{artifact_key(record.model_name)}`; "
            f"`attestflow verify {registered.model_uri}` checks it."
        ),
        description=f"{record.kind} of {registered.model_uri}: {record.result}",
    )


attest_task = task(name="attest")(attest)
