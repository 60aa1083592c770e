"""Signed evidence in the release: each decision is signed, added to the version's evidence and audited.

The gate verdict, the approval and the canary's verdict are built from the stage records
(`attestflow.evidence`) and handed to stage `attest`, which runs with the `sign` stage's
retries and timeout, since it signs with the same key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attestflow.context import ReleaseContext
from attestflow.evidence import EVIDENCE_DIR
from attestflow.outcomes import EvidenceRecord
from attestflow.records import RegistrationRecord
from flows.stages import Invoke
from tasks.attest import attest_task


def attest_evidence(
    ctx: ReleaseContext,
    invoke: Invoke,
    stmt: dict[str, Any],
    registered: RegistrationRecord,
    attach: Path | None = None,
    under: str = EVIDENCE_DIR,
) -> EvidenceRecord:
    """Sign `stmt` about `registered` with the release key, add it to the version's evidence (`under`), audit it."""
    record = invoke(attest_task, ctx.cfg.sign)(
        stmt,
        registered,
        key=ctx.key,
        workspace_root=ctx.ws.root,
        tracking_uri=ctx.tracking_uri,
        out_dir=ctx.release_dir,
        attach=attach,
        under=under,
    )
    ctx.record(record)
    return record
